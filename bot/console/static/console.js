// The console works without this file. It keeps a form from being sent twice by a double click, and shows
// live updates (server-sent events from /console/live): new cases, residents' new messages, failed notices.
"use strict";

// A poster's print button (an inline onclick would break the Content-Security-Policy).
document.querySelector("[data-print]")?.addEventListener("click", () => window.print());

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.sent) { event.preventDefault(); return; }
  form.dataset.sent = "1";
  setTimeout(() => { delete form.dataset.sent; }, 3000);
});

function caseLink(number) {
  const link = document.createElement("a");
  link.href = document.body.dataset.caseUrl + encodeURIComponent(number);
  link.textContent = number;
  return link;
}

function announce(kind, data) {
  const box = document.getElementById("live");
  if (!box) return;
  const item = document.createElement("p");
  item.className = "live-item live-" + kind;
  item.textContent = data.text + " ";
  item.appendChild(caseLink(data.number));
  box.prepend(item);
  while (box.children.length > 5) box.lastElementChild.remove();
}

function addRow(data) {
  const body = document.querySelector("#cases tbody");
  if (!body || body.querySelector(`tr[data-number="${CSS.escape(data.number)}"]`)) return;
  const row = document.createElement("tr");
  row.dataset.number = data.number;
  row.className = "live-new";
  const cells = [null, data.received, data.category, data.place, data.summary, "—", data.status, ""];
  cells.forEach((text, i) => {
    const cell = document.createElement("td");
    if (i === 0) {
      cell.appendChild(caseLink(data.number));
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = document.body.dataset.newTag;
      cell.append(" ", tag);
    } else {
      cell.textContent = text;
    }
    row.appendChild(cell);
  });
  body.prepend(row);
  body.closest("table").hidden = false;
  document.querySelector("p.empty")?.remove();
}

const liveUrl = document.body.dataset.live;
if (liveUrl && "EventSource" in window) {
  const source = new EventSource(liveUrl);
  source.addEventListener("case", (e) => { const data = JSON.parse(e.data); announce("case", data); addRow(data); });
  source.addEventListener("message", (e) => announce("message", JSON.parse(e.data)));
  source.addEventListener("failure", (e) => announce("failure", JSON.parse(e.data)));
}

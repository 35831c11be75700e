"""The house rules that keep the layers apart (shared/ARCHITECTURE.md), checked rather than hoped for."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_services_never_pull_in_aiohttp_or_wechat_types():
    modules = sorted(f"bot.services.{p.stem}" for p in (ROOT / "bot" / "services").glob("*.py") if p.stem != "__init__")
    code = f"import sys; import {', '.join(modules)}; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('aiohttp', 'wechatpy') or m.startswith('bot.wechat')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_storage_never_imports_bot():
    for path in (ROOT / "storage").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "bot" or n.startswith("bot.") for n in names), f"{path} imports {names}"

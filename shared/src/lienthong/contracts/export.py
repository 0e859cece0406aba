"""Export the JSON Schema of every event type: `python -m lienthong.contracts.export docs/schemas`.

One file per versioned type (`vn.gov.dossier.submitted.v1.json`). The contract test compares these files with the
code, so a contract cannot change without a new version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lienthong.contracts import EVENT_TYPES


def schemas() -> dict[str, str]:
    return {
        f"{event_type}.json": json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False, sort_keys=True)
        + "\n"
        for event_type, model in sorted(EVENT_TYPES.items())
    }


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"{len(EVENT_TYPES)} schemas written to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")

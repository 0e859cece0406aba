"""Export the JSON Schema of every event type: `python -m lienthong.contracts.export docs/schemas`.

One file per versioned type (`vn.gov.dossier.submitted.v1.json`). The contract test compares these files with the
code, so a contract cannot change without a new version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lienthong.contracts import EVENT_TYPES
from lienthong.contracts.intake import DossierSubmission

# Payloads that are not events but are still contracts with other systems.
PAYLOADS = {"vn.gov.intake.submission.v1": DossierSubmission}


def schemas() -> dict[str, str]:
    models = {**EVENT_TYPES, **PAYLOADS}
    return {
        f"{name}.json": json.dumps(model.model_json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
        for name, model in sorted(models.items())
    }


def main(out: str) -> None:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in schemas().items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"{len(schemas())} schemas written to {folder}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")

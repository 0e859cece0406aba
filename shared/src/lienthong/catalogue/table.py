"""The procedure catalogue as a table (CSV or XLSX) in the layout of the national procedure database, one procedure
per row, read whole or refused whole: every error names its row and column, and nothing of a file with an error is
used.

Cells that hold lists separate their items with `;` (documents, channels, steps); a step is
`name | unit | working days` (and `| công dân` when the citizen acts, e.g. pays: the clock is paused), its unit a unit code or one of the roles routing resolves per dossier
(`receiving`, `competent_commune`, `residence_commune`, `parcel_branch`).
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lienthong.catalogue import Procedure, StepUnitRole, Unit

# Column key -> header as the file names it (matched without regard to case, accents' composition or spacing).
COLUMNS: dict[str, str] = {
    "code": "Mã thủ tục",
    "name": "Tên thủ tục",
    "level": "Cấp thực hiện",
    "field": "Lĩnh vực",
    "days": "Thời hạn giải quyết (ngày làm việc)",
    "fee": "Phí, lệ phí (đồng)",
    "exemption": "Miễn phí, lệ phí",
    "online": "Mức độ dịch vụ công trực tuyến",
    "channels": "Cách thức nộp",
    "documents": "Thành phần hồ sơ",
    "land": "Cần thửa đất",
    "steps": "Các bước (liên thông)",
}
OPTIONAL = frozenset({"field", "exemption", "land", "fee"})
LEVELS = {"cấp tỉnh": "province", "cấp xã": "commune"}
ONLINE = {"toàn trình": "full", "một phần": "partial", "không": "none"}
CHANNELS = {"trực tuyến": "online", "trực tiếp": "direct", "bưu chính": "postal"}
CITIZEN_ACTS = "công dân"  # a step's fourth part: the citizen acts (pays, ...), the clock is paused meanwhile
YES_NO = {"có": True, "không": False, "": False}
# Where a model field's error is reported: the column the field came from.
FIELD_COLUMN = {"code": "code", "name": "name", "level": "level", "field": "field", "online": "online",
                "channels": "channels", "required_documents": "documents", "needs_land_parcel": "land",
                "fee_vnd": "fee", "fee_exemption": "exemption", "steps": "steps"}
MAX_ROWS = 20_000


@dataclass(frozen=True)
class CellError:
    row: int  # as a spreadsheet numbers it: the header is row 1
    column: str  # the header
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.message}"


class CatalogueFileError(ValueError):
    """The file was refused whole; `errors` says where and why."""

    def __init__(self, errors: list[CellError]) -> None:
        self.errors = errors
        shown = "\n".join(f"  {e}" for e in errors[:50])
        more = f"\n  ... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} error(s), nothing imported:\n{shown}{more}")


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split()).casefold()


def read_rows(path: Path) -> list[dict[str, str]]:
    """The file's rows as {column key: cell text}, in order (row 2 first). Refuses unknown or missing headers."""
    if path.suffix.lower() == ".xlsx":
        raw = list(_xlsx_rows(path))
    elif path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            raw = list(csv.reader(f))
    else:
        raise CatalogueFileError([CellError(0, "", f"not a .csv or .xlsx file: {path.name}")])
    if not raw:
        raise CatalogueFileError([CellError(1, "", "the file is empty")])
    if len(raw) - 1 > MAX_ROWS:
        raise CatalogueFileError([CellError(MAX_ROWS + 2, "", f"more than {MAX_ROWS} procedures")])
    by_header = {_norm(header): key for key, header in COLUMNS.items()}
    keys: list[str | None] = []
    errors = []
    for header in raw[0]:
        key = by_header.get(_norm(header or ""))
        if key is None and (header or "").strip():
            errors.append(CellError(1, header, "unknown column"))
        keys.append(key)
    missing = [COLUMNS[k] for k in COLUMNS if k not in keys and k not in OPTIONAL]
    errors += [CellError(1, header, "missing column") for header in missing]
    if errors:
        raise CatalogueFileError(errors)
    rows = []
    for cells in raw[1:]:
        row = {key: (cell or "").strip() for key, cell in zip(keys, cells, strict=False) if key is not None}
        rows.append(row)
    return rows


def _xlsx_rows(path: Path) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        for values in book.worksheets[0].iter_rows(values_only=True):
            yield ["" if v is None else str(v) for v in values]
    finally:
        book.close()


def procedures_from_rows(rows: list[dict[str, str]], units: dict[str, Unit]) -> dict[str, Procedure]:
    """Every row checked; the procedures if all are valid, else CatalogueFileError with every error found."""
    errors: list[CellError] = []
    procedures: dict[str, Procedure] = {}
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        if not any(row.values()):
            continue  # a blank line
        fields, row_errors = _fields(row)
        row_errors += _step_unit_errors(fields.get("steps", []), units)
        if not row_errors:
            try:
                proc = Procedure.model_validate(fields)
            except ValidationError as exc:
                # a model-level error (no field) is the online level's rule on channels
                row_errors = [(FIELD_COLUMN.get(str(e["loc"][0]), "code") if e["loc"] else "channels", _message(e))
                              for e in exc.errors()]
            else:
                row_errors = _consistency(proc, row)
                if proc.code in first_row:
                    row_errors.append(("code", f"{proc.code} is also on row {first_row[proc.code]}"))
                elif not row_errors:
                    first_row[proc.code] = number
                    procedures[proc.code] = proc
        errors += [CellError(number, COLUMNS[key], message) for key, message in row_errors]
    if errors:
        raise CatalogueFileError(errors)
    if not procedures:
        raise CatalogueFileError([CellError(2, "", "no procedure in the file")])
    return procedures


def load_file(path: Path, units: dict[str, Unit]) -> dict[str, Procedure]:
    return procedures_from_rows(read_rows(path), units)


def _items(cell: str) -> list[str]:
    return [item.strip() for item in cell.replace("\n", ";").split(";") if item.strip()]


def _message(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"][1:])
    return f"{where}: {error['msg']}" if where else str(error["msg"])


def _fields(row: dict[str, str]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The row's cells as the model's fields; what cannot be read is an error of its column."""
    errors: list[tuple[str, str]] = []

    def choice(key: str, table: dict[str, Any]) -> Any:
        value = _norm(row.get(key, ""))
        if value not in table:
            errors.append((key, f"expected one of {', '.join(repr(k.capitalize()) for k in table if k)}"))
        return table.get(value)

    fields: dict[str, Any] = {
        "code": row.get("code", ""), "name": row.get("name", ""), "field": row.get("field") or None,
        "level": choice("level", LEVELS), "online": choice("online", ONLINE),
        "needs_land_parcel": choice("land", YES_NO), "fee_exemption": row.get("exemption") or None,
        "required_documents": tuple(_items(row.get("documents", ""))),
    }
    channels = []
    for item in _items(row.get("channels", "")):
        if _norm(item) in CHANNELS:
            channels.append(CHANNELS[_norm(item)])
        else:
            errors.append(("channels", f"{item!r} is not one of {', '.join(map(repr, CHANNELS))}"))
    fields["channels"] = tuple(channels)
    fee = row.get("fee", "").replace(".", "").replace(",", "").replace(" ", "") or "0"
    if fee.isdigit():
        fields["fee_vnd"] = int(fee)
    else:
        errors.append(("fee", "expected a whole number of đồng"))
    steps = []
    for index, item in enumerate(_items(row.get("steps", "")), start=1):
        parts = [part.strip() for part in item.split("|")]
        if len(parts) not in (3, 4) or not parts[2].isdigit() or [_norm(x) for x in parts[3:]] not in ([], [CITIZEN_ACTS]):
            errors.append(("steps", f"step {index}: expected 'name | unit | working days' "
                                    f"(and '| {CITIZEN_ACTS}' when the citizen acts)"))
            continue
        steps.append({"name": parts[0], "unit": parts[1], "days": int(parts[2]), "citizen_action": len(parts) == 4})
    fields["steps"] = steps
    return fields, errors


def _step_unit_errors(steps: list[dict[str, Any]], units: dict[str, Unit]) -> list[tuple[str, str]]:
    roles = set(StepUnitRole.__args__)  # type: ignore[attr-defined]
    return [("steps", f"step {i}: unknown unit {step['unit']!r}") for i, step in enumerate(steps, start=1)
            if step["unit"] not in roles and step["unit"] not in units]


def _consistency(proc: Procedure, row: dict[str, str]) -> list[tuple[str, str]]:
    days = row.get("days", "")
    if not days.isdigit():
        return [("days", "expected a whole number of working days")]
    if int(days) != proc.processing_days:
        return [("days", f"{days} working days, but the steps add up to {proc.processing_days}")]
    return []


def to_rows(procedures: Iterable[Procedure]) -> list[list[str]]:
    """The table of these procedures, header first (what `read_rows` reads back)."""
    levels = {v: k for k, v in LEVELS.items()}
    online = {v: k for k, v in ONLINE.items()}
    channels = {v: k for k, v in CHANNELS.items()}
    out = [list(COLUMNS.values())]
    for p in procedures:
        out.append([p.code, p.name, levels[p.level].capitalize(), p.field or "", str(p.processing_days),
                    str(p.fee_vnd), p.fee_exemption or "", online[p.online].capitalize(),
                    "; ".join(channels[c].capitalize() for c in p.channels), "; ".join(p.required_documents),
                    "Có" if p.needs_land_parcel else "Không",
                    "; ".join(f"{s.name} | {s.unit} | {s.days}" + (f" | {CITIZEN_ACTS}" if s.citizen_action else "")
                              for s in p.steps)])
    return out


def write_file(procedures: Iterable[Procedure], path: Path) -> None:
    rows = to_rows(procedures)
    if path.suffix.lower() == ".xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("Thủ tục hành chính")
        for row in rows:
            sheet.append(row)
        book.save(path)
        return
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


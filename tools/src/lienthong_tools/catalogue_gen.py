"""A generated procedure catalogue with the province's published mix (seeds: Thanh Hóa publishes 2,223 procedures,
620 fully online and 1,383 partly; 42 exempted from fees by Nghị quyết 12/NQ-HĐND of 24 June 2025), for tests and
`make run` until the province's own file is imported. The built-in procedures come first, unchanged, so everything
filed under the built-in catalogue is filed the same under this one. Names are plausible, not real; the commune
share (a fifth) is our choice: the seeds do not give it."""

from __future__ import annotations

import random

from lienthong.catalogue import Catalogue, Procedure, catalogue

TOTAL, FULL, PARTIAL = 2_223, 620, 1_383  # the rest (220) are not offered online
EXEMPTED = 42
EXEMPTION = "Nghị quyết 12/NQ-HĐND ngày 24/6/2025 của HĐND tỉnh Thanh Hóa"
COMMUNE_SHARE = 0.2
# Field -> the unit that decides it at provincial level.
PROVINCE_FIELDS = {
    "Tư pháp": "STP", "Y tế": "SYT", "Xây dựng": "SXD", "Nông nghiệp và Môi trường": "SNNMT",
    "Khoa học và Công nghệ": "SKHCN", "Tài chính": "STC", "Nội vụ": "SNV", "Công Thương": "SCT",
    "Giáo dục và Đào tạo": "SGDDT", "Văn hóa, Thể thao và Du lịch": "SVHTTDL", "Đất đai": "parcel_branch",
    "Thuế": "THUE", "Bảo hiểm xã hội": "BHXH", "Đăng ký, quản lý cư trú": "CATINH",
}
COMMUNE_FIELDS = ["Hộ tịch", "Chứng thực", "Bảo trợ xã hội", "Người có công", "Đất đai", "Xây dựng",
                  "Hộ kinh doanh", "Văn hóa cơ sở", "Giáo dục mầm non", "Nông nghiệp"]
ACTIONS = ["Cấp", "Cấp lại", "Cấp đổi", "Gia hạn", "Điều chỉnh", "Đăng ký", "Thu hồi", "Xác nhận", "Công nhận",
           "Thẩm định"]
OBJECTS = ["giấy phép", "giấy chứng nhận", "chứng chỉ hành nghề", "quyết định", "văn bản chấp thuận",
           "hồ sơ", "giấy xác nhận", "thông báo"]
DOCUMENTS = ["giay-to-tuy-than", "ban-sao-giay-phep", "ban-ve", "hop-dong", "bien-lai", "anh-the", "xac-nhan-cu-tru"]
DAYS = [1, 2, 3, 5, 7, 10, 12, 15, 20, 30]


def generate(seed: int = 2025, base: Catalogue | None = None) -> dict[str, Procedure]:
    base = base or catalogue()
    rng = random.Random(seed)
    procedures = dict(base.procedures)
    online_left = {"full": FULL, "partial": PARTIAL, "none": TOTAL - FULL - PARTIAL}
    for proc in procedures.values():
        online_left[proc.online] -= 1
    levels = ["full"] * online_left["full"] + ["partial"] * online_left["partial"] + ["none"] * online_left["none"]
    rng.shuffle(levels)
    exempt = set(rng.sample(range(len(levels)), EXEMPTED))
    for i, online in enumerate(levels):
        commune = rng.random() < COMMUNE_SHARE
        field = rng.choice(COMMUNE_FIELDS) if commune else rng.choice(list(PROVINCE_FIELDS))
        unit = rng.choice(["competent_commune"] * 4 + ["residence_commune"]) if commune else PROVINCE_FIELDS[field]
        steps = [{"name": "Giải quyết hồ sơ", "unit": unit, "days": rng.choice(DAYS)}]
        if rng.random() < 0.05:  # an interconnected chain: a tax notice or a police record after the decision
            steps.append({"name": "Xác định nghĩa vụ tài chính", "unit": "THUE", "days": rng.choice([3, 5])}
                         if field in ("Đất đai", "Xây dựng") else
                         {"name": "Cập nhật cơ sở dữ liệu cư trú", "unit": "CATINH", "days": 2})
        fee = rng.choice([0, 0, 20_000, 50_000, 100_000, 200_000, 500_000])
        code = f"{1 if commune else 2}.{i:06d}"
        procedures[code] = Procedure(
            code=code,
            name=f"{rng.choice(ACTIONS)} {rng.choice(OBJECTS)} lĩnh vực {field.lower()}",
            level="commune" if commune else "province", field=field, online=online,
            channels=("online", "direct", "postal") if online == "full" else
            ("direct", "postal") if online == "partial" else ("direct",),
            required_documents=("to-khai", *rng.sample(DOCUMENTS, rng.randint(0, 2))),
            needs_land_parcel=unit == "parcel_branch",  # routing finds the branch from the parcel's commune
            fee_vnd=fee or (50_000 if i in exempt else 0), fee_exemption=EXEMPTION if i in exempt else None,
            steps=steps)
    return procedures

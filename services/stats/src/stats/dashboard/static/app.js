// The operators' dashboard: polls the stats API and the topic monitor every 5 s and renders tables; charts are
// SVG rendered by the server. Figures come from the same endpoints the province's reports use.
"use strict";

const REFRESH_MS = 5000;
const FIGURES = [
  ["received", "Tiếp nhận"], ["received_online", "— trực tuyến"], ["received_direct", "— trực tiếp"],
  ["received_postal", "— bưu chính"], ["resolved", "Đã giải quyết"], ["resolved_on_time", "— đúng hạn"],
  ["resolved_late", "— quá hạn"], ["in_progress", "Đang giải quyết"], ["overdue", "— trong đó quá hạn"],
  ["rejected", "Từ chối"], ["withdrawn", "Rút hồ sơ"], ["on_time_rate", "Tỉ lệ đúng hạn"],
  ["online_rate", "Tỉ lệ trực tuyến"],
];
const state = { unit: null, indexUnit: null, busy: false };
const $ = (sel) => document.querySelector(sel);

function todayVN() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Ho_Chi_Minh" }).format(new Date());
}
function fmt(key, value) {
  if (value === null || value === undefined) return "—";
  if (key.endsWith("_rate")) return (value * 100).toLocaleString("vi-VN", { maximumFractionDigits: 2 }) + "%";
  return Number(value).toLocaleString("vi-VN");
}
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
// A procedure by its name (from the catalogue in use), its code on hover.
function procedureCell(d) {
  const td = cell(d.procedure_name || d.procedure);
  td.title = d.procedure;
  return td;
}
async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
  return resp.json();
}
async function inlineSVG(target, url) {
  const resp = await fetch(url, { cache: "no-store" });
  if (resp.ok) $(target).innerHTML = await resp.text();
}
function period() {
  return { from: $("#from").value, to: $("#to").value };
}

function renderFigures(target, figures) {
  const dl = $(target + " dl");
  dl.replaceChildren();
  for (const [key, label] of FIGURES) {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = fmt(key, figures[key]);
    dd.dataset.key = key;
    dd.dataset.value = figures[key] === null ? "" : String(figures[key]);
    dl.append(dt, dd);
  }
}

async function refreshProvince() {
  const p = period();
  const today = todayVN();
  const [todays, chosen, ranking, overdue, index, indexRanking] = await Promise.all([
    getJSON(`/v1/stats/summary?from=${today}&to=${today}`),
    getJSON(`/v1/stats/summary?from=${p.from}&to=${p.to}`),
    getJSON(`/v1/stats/units?from=${p.from}&to=${p.to}&sort=on_time_rate`),
    getJSON(`/v1/stats/overdue?limit=50`),
    getJSON(`/v1/stats/index?from=${p.from}&to=${p.to}`),
    getJSON(`/v1/stats/index/units?from=${p.from}&to=${p.to}`),
  ]);
  renderIndex(index, indexRanking);
  renderFigures("#today", todays);
  renderFigures("#period-figures", chosen);
  const body = $("#ranking tbody");
  body.replaceChildren();
  for (const row of ranking) {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.unit = row.unit;
    tr.append(cell(`${row.name} (${row.unit})`), cell(fmt("received", row.received), "num"),
      cell(fmt("resolved", row.resolved), "num"), cell(fmt("on_time_rate", row.on_time_rate), "num"),
      cell(fmt("in_progress", row.in_progress), "num"),
      cell(fmt("overdue", row.overdue), row.overdue > 0 ? "num warn" : "num"));
    tr.addEventListener("click", () => openUnit(row.unit, row.name));
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") openUnit(row.unit, row.name); });
    body.append(tr);
  }
  renderOverdue("#overdue tbody", overdue, true);
  await inlineSVG("#timeseries-chart", `/dashboard/charts/timeseries.svg?from=${p.from}&to=${p.to}`);
  if (state.unit) await refreshUnit();
}

function points(value) {
  return value === null || value === undefined ? "—" : value.toLocaleString("vi-VN", { maximumFractionDigits: 2 });
}

// The dossiers short of one component (in its denominator, not its numerator), for the province or a unit.
async function showBehind(unit, component, name) {
  const p = period();
  const scope = unit ? `&unit=${unit}` : "";
  const behind = await getJSON(`/v1/stats/index/dossiers?component=${component}&from=${p.from}&to=${p.to}${scope}`);
  const figure = $("#index-dossiers");
  figure.hidden = false;
  figure.dataset.component = component;
  figure.dataset.count = String(behind.count);
  $("#index-dossiers-title").textContent =
    `${name} — ${unit || "toàn tỉnh"}: ${behind.count.toLocaleString("vi-VN")} hồ sơ chưa đạt ` +
    `(${behind.numerator.toLocaleString("vi-VN")}/${behind.denominator.toLocaleString("vi-VN")} đạt)`;
  const body = $("#index-dossiers tbody");
  body.replaceChildren();
  for (const d of behind.dossiers) {
    const tr = document.createElement("tr");
    tr.append(cell(d.code), procedureCell(d), cell(d.receiving_unit), cell(d.received_day), cell(d.due_date),
      cell(d.closed_day || "—"));
    body.append(tr);
  }
  $("#index-dossiers-more").textContent = behind.truncated ? `Hiển thị ${behind.dossiers.length} hồ sơ đầu tiên.` : "";
}

// One row per component, grouped: its rate, the counts behind it and its points out of its maximum; a row opens
// the dossiers short of it.
function renderComponents(target, index, unit) {
  const body = $(target + " tbody");
  body.replaceChildren();
  for (const group of index.groups) {
    group.components.forEach((c, i) => {
      const tr = document.createElement("tr");
      tr.dataset.component = c.key;
      tr.dataset.points = c.points === null ? "" : String(c.points);
      const name = cell(i === 0 ? `${group.name} (${points(group.points)}/${points(group.max_points)})` : "");
      tr.append(name, cell(c.name), cell(c.rate === null ? "chưa có dữ liệu" : fmt("x_rate", c.rate), "num"),
        cell(`${c.numerator.toLocaleString("vi-VN")}/${c.denominator.toLocaleString("vi-VN")}`, "num"),
        cell(`${points(c.points)}/${points(c.max_points)}`, "num"));
      tr.tabIndex = 0;
      const open = () => showBehind(unit, c.key, c.name);
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      body.append(tr);
    });
  }
}

function renderIndex(index, ranking) {
  $("#index-table").textContent = index.table;
  $("#index-total").textContent = points(index.total);
  $("#index-total").dataset.total = index.total === null ? "" : String(index.total);
  renderComponents("#index-province", index, null);
  const body = $("#index-ranking tbody");
  body.replaceChildren();
  ranking.forEach((row, i) => {
    const tr = document.createElement("tr");
    tr.tabIndex = 0;
    tr.dataset.unit = row.unit;
    tr.dataset.total = row.total === null ? "" : String(row.total);
    tr.append(cell(String(i + 1), "num"), cell(`${row.name} (${row.unit})`), cell(points(row.total), "num"));
    const open = () => {
      state.indexUnit = row.unit;
      $("#index-unit").hidden = false;
      $("#index-unit-title").textContent = `${row.name} (${row.unit}): ${points(row.total)} điểm`;
      renderComponents("#index-unit", row, row.unit);
    };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    body.append(tr);
    if (state.indexUnit === row.unit) open();  // the opened unit follows the refresh
  });
}

function renderOverdue(target, rows, withUnit) {
  const body = $(target);
  body.replaceChildren();
  for (const d of rows) {
    const tr = document.createElement("tr");
    tr.append(cell(d.code));
    if (withUnit) tr.append(cell(d.unit));
    tr.append(procedureCell(d), cell(d.step === null ? "—" : String(d.step + 1)), cell(d.due_date),
      cell(String(d.working_days_late), "num warn"));
    body.append(tr);
  }
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell("Không có hồ sơ quá hạn");
    td.colSpan = withUnit ? 6 : 5;
    tr.append(td);
    body.append(tr);
  }
}

async function openUnit(code, name) {
  state.unit = { code, name };
  $("#unit-detail").hidden = false;
  $("#unit-title").textContent = `Đơn vị: ${name} (${code})`;
  await refreshUnit();
  $("#unit-detail").scrollIntoView({ block: "nearest" });
}

async function refreshUnit() {
  const p = period();
  const code = state.unit.code;
  const [figures, overdue] = await Promise.all([
    getJSON(`/v1/stats/summary?from=${p.from}&to=${p.to}&unit=${code}`),
    getJSON(`/v1/stats/overdue?unit=${code}&limit=50`),
  ]);
  renderFigures("#unit-figures", figures);
  renderOverdue("#unit-overdue tbody", overdue, false);
  await inlineSVG("#unit-chart", `/dashboard/charts/timeseries.svg?from=${p.from}&to=${p.to}&unit=${code}`);
}

async function refreshTopics() {
  const data = await getJSON("/v1/ops/topics");
  const body = $("#topics tbody");
  body.replaceChildren();
  for (const t of data.topics) {
    const tr = document.createElement("tr");
    tr.dataset.topic = t.topic;
    const name = cell(t.topic);
    name.title = t.description;
    const lagText = Object.entries(t.lag).map(([g, n]) => `${g}: ${n.toLocaleString("vi-VN")}`).join(", ") || "—";
    const lag = cell(lagText + (t.lag_growing ? " (đang tăng)" : ""), t.lag_growing ? "warn" : "");
    const dlq = cell(t.dlq === undefined ? "—" : `${t.dlq_size.toLocaleString("vi-VN")}` +
      (t.dlq_growing ? " (đang tăng)" : ""), t.dlq_size > 0 ? "num warn" : "num");
    if (t.dlq_reasons && t.dlq_reasons.length) {
      const ul = document.createElement("ul");
      ul.className = "reasons";
      for (const r of t.dlq_reasons) {
        const li = document.createElement("li");
        li.textContent = `${r.service}: ${r.reason}`;
        ul.append(li);
      }
      dlq.append(ul);
    }
    tr.append(name, cell(String(t.partitions), "num"), cell(fmt("in", t.in_per_s), "num in-rate"),
      cell(fmt("out", t.out_per_s), "num out-rate"), lag, dlq);
    body.append(tr);
  }
  await inlineSVG("#lag-chart", "/dashboard/charts/lag.svg");
}

async function refresh() {
  if (state.busy) return;  // a slow store must not pile up requests: skip a tick instead
  state.busy = true;
  try {
    await Promise.all([refreshProvince(), refreshTopics()]);
    $("#updated").textContent = new Date().toLocaleTimeString("vi-VN");
    document.body.dataset.loaded = "true";
    document.body.dataset.rounds = String(Number(document.body.dataset.rounds || 0) + 1);
  } catch (err) {
    $("#updated").textContent = `lỗi: ${err.message}`;
  } finally {
    state.busy = false;
  }
}

function init() {
  const today = todayVN();
  $("#to").value = today;
  $("#from").value = today.slice(0, 8) + "01";
  $("#period").addEventListener("submit", async (e) => {
    e.preventDefault();
    while (state.busy) await new Promise((r) => setTimeout(r, 100));  // the chosen period, not a stale tick
    await refresh();
  });
  $("#unit-close").addEventListener("click", () => { state.unit = null; $("#unit-detail").hidden = true; });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

init();

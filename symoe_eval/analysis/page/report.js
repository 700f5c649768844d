"use strict";
// symoe report: renders the leaderboard and the question explorer from the JSON block above.
// Questions are filtered in memory and drawn one page at a time (PAGE_SIZE rows in the DOM).
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const PAGE_SIZE = 50;
const INVALID = DATA.invalid;  // symoe_eval.runoutput.INVALID, handed over by report.py
const state = { run: 0, page: 0, open: new Set(), sortKey: null, sortDir: -1 };
const FILTERS = ["f-task", "f-subject", "f-expert", "f-correct", "f-fallback", "f-distinct", "f-consensus", "f-changed", "f-cut"];
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Any field may hold another type than the writer's (a run folder is untrusted): shown as text.
const list = (v) => (Array.isArray(v) ? v.map(String) : v === null || v === undefined ? [] : [String(v)]);
const pct = (x) => (x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%");
const verdict = (right) => (right === null || right === undefined ? "" : right ? "\u2713" : "\u2717");
const verdictClass = (right) => (right === null || right === undefined ? "" : right ? "right" : "wrong");

// ------------------------------------------------------------------ leaderboard

function leaderboardColumns() {
  const board = DATA.leaderboard;
  const columns = [{ key: "run", label: "run", value: (r) => r.run }];
  for (const task of board.tasks) {
    columns.push({ key: "task:" + task, label: task, value: (r) => (r.cells[task] ? r.cells[task][0] : null), cell: task });
  }
  columns.push({ key: "macro", label: "macro avg", value: (r) => r.macro });
  for (const [key, label] of Object.entries(board.cost_columns)) columns.push({ key, label, value: (r) => r[key] });
  return columns;
}

function accuracyCell(cell) {
  if (!cell) return el("td", { class: "num" }, "-");
  const [acc, low, high, n, mark] = cell;
  const markNode = mark ? el("span", { class: mark === "+" ? "mark-plus" : "mark-minus" }, " " + (mark === "+" ? "+" : "\u2212")) : null;
  return el("td", { class: "num", "data-value": acc }, pct(acc), " ", el("span", { class: "ci" }, `[${pct(low)}, ${pct(high)}] n=${n}`), markNode);
}

function renderLeaderboard() {
  const columns = leaderboardColumns();
  const rows = DATA.leaderboard.rows.slice();
  if (state.sortKey) {
    const column = columns.find((c) => c.key === state.sortKey);
    rows.sort((a, b) => {
      const x = column.value(a), y = column.value(b);
      if (x === y) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * state.sortDir;
    });
  }
  const head = el("tr", {}, columns.map((c) => el("th", {
    "data-key": c.key,
    class: c.key === state.sortKey ? (state.sortDir > 0 ? "sorted-asc" : "sorted-desc") : "",
    onclick: () => { state.sortDir = state.sortKey === c.key ? -state.sortDir : c.key === "run" ? 1 : -1; state.sortKey = c.key; renderLeaderboard(); saveState(); },
  }, c.label)));
  $("leaderboard").tHead.replaceChildren(head);
  $("leaderboard").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {}, columns.map((c) => {
    if (c.cell) return accuracyCell(r.cells[c.cell]);
    if (c.key === "run") return el("td", {}, r.run);
    const value = c.value(r);
    return el("td", { class: "num", "data-value": value === null ? "" : value },
      value === null ? "-" : c.key === "macro" ? pct(value) : Math.round(value).toLocaleString("en"));
  }))));
}

function renderPlots() {
  $("plots").replaceChildren(...DATA.plots.map((p) => el("figure", {}, el("img", { src: p.src, alt: p.title }), el("figcaption", {}, p.title))));
}

// ------------------------------------------------------------------ explorer

const run = () => DATA.runs[state.run];
const arrayOf = (v) => (Array.isArray(v) ? v : []);
const everyone = (q) => new Set([...list(q.experts), ...arrayOf(q.rounds).flatMap((r) => arrayOf(r.responses).map((s) => String(s.who)))]);

function fillSelect(id, values, allLabel) {
  const select = $(id), kept = select.value;
  select.replaceChildren(el("option", { value: "" }, allLabel), ...values.map((v) => el("option", { value: v }, v)));
  select.value = values.includes(kept) ? kept : "";
}

function fillFilters() {
  const questions = run().questions;
  const distinct = (f) => [...new Set(questions.flatMap(f))].filter((v) => v !== "").sort();
  fillSelect("f-task", distinct((q) => [q.task]), "all");
  fillSelect("f-subject", distinct((q) => [q.subject]), "all");
  fillSelect("f-expert", distinct((q) => [...everyone(q)]), "all");
  fillSelect("f-distinct", distinct((q) => (list(q.experts).length ? [String(distinctExperts(q))] : [])), "all");
  $("f-fallback").disabled = !questions.some((q) => q.keywords !== null && q.keywords !== undefined);
}

function matches(q) {
  const f = (id) => $(id).value;
  if (f("f-task") && q.task !== f("f-task")) return false;
  if (f("f-subject") && q.subject !== f("f-subject")) return false;
  if (f("f-expert") && !everyone(q).has(f("f-expert"))) return false;
  const correct = f("f-correct");
  if (correct === "right" && !(q.score > 0)) return false;
  if (correct === "wrong" && q.score > 0) return false;
  if (correct === "invalid" && q.answer !== INVALID) return false;
  const fallback = f("f-fallback");
  if (!$("f-fallback").disabled && fallback === "yes" && !q.fallback) return false;
  if (!$("f-fallback").disabled && fallback === "no" && q.fallback) return false;
  if (f("f-distinct") && String(distinctExperts(q)) !== f("f-distinct")) return false;
  if (f("f-consensus") && Boolean(q.consensus) !== (f("f-consensus") === "yes")) return false;
  if (f("f-changed") && departed(q) !== (f("f-changed") === "yes")) return false;
  if (f("f-cut") && q.prompts_cut > 0 !== (f("f-cut") === "yes")) return false;
  const words = f("f-search").trim().toLowerCase();
  return !words || haystack(q).includes(words);
}

const distinctExperts = (q) => new Set(list(q.experts)).size;

// The answer most of the last round's responses gave (more than half of them), else null.
function majority(q) {
  const rounds = arrayOf(q.rounds);
  if (!rounds.length) return null;
  const answers = arrayOf(rounds[rounds.length - 1].responses).map((s) => String(s && s.answer));
  const counts = {};
  for (const a of answers) if (a !== INVALID) counts[a] = (counts[a] || 0) + 1;
  const top = Object.keys(counts).find((a) => counts[a] * 2 > answers.length);
  return top === undefined ? null : top;
}

// Whether the final answer is not the one most experts gave (the aggregator overruled them, or gave none).
const departed = (q) => { const m = majority(q); return m !== null && String(q.answer) !== m; };

// Everything the search looks in, lower-cased once per question.
function haystack(q) {
  if (q.haystack === undefined) {
    const texts = [q.question, q.final && q.final.text, ...list(q.keywords), ...list(q.mapped),
      ...arrayOf(q.rounds).flatMap((r) => arrayOf(r.responses).map((s) => s && s.text))];
    q.haystack = texts.map(String).join("\n").toLowerCase();
  }
  return q.haystack;
}

// ``text`` with each occurrence of the search words wrapped in <mark> (as text nodes: never markup).
function marked(text) {
  const s = String(text), needle = $("f-search").value.trim().toLowerCase();
  if (!needle) return s;
  const lower = s.toLowerCase(), out = [];
  let at = 0, hit;
  while ((hit = lower.indexOf(needle, at)) !== -1) {
    out.push(s.slice(at, hit), el("mark", {}, s.slice(hit, hit + needle.length)));
    at = hit + needle.length;
  }
  out.push(s.slice(at));
  return out;
}

function renderRecruitment(questions) {
  const counts = {}, experts = new Set();
  for (const q of questions) {
    counts[q.task] = counts[q.task] || {};
    for (const e of list(q.experts)) { counts[q.task][e] = (counts[q.task][e] || 0) + 1; experts.add(e); }
  }
  const tasks = Object.keys(counts).sort(), names = [...experts].sort();
  $("recruitment-box").hidden = names.length === 0;
  $("recruitment").tHead.replaceChildren(el("tr", {}, el("th", {}, "expert"), tasks.map((t) => el("th", {}, t))));
  $("recruitment").tBodies[0].replaceChildren(...names.map((e) => el("tr", {}, el("th", {}, e),
    tasks.map((t) => el("td", { class: "num" }, counts[t][e] || 0)))));
}

function said(response) {
  return el("div", { class: "response" },
    el("span", { class: "who" }, response.who), ": answer ",
    el("span", { class: response.answer === INVALID ? "invalid" : verdictClass(response.right) }, response.answer, " ", verdict(response.right)),
    el("pre", {}, marked(response.text)));
}

function fact(key, ...value) {
  return el("div", { class: "facts" }, el("span", { class: "k" }, key + ": "), ...value);
}

const tags = (values) => (list(values).length ? list(values).map((v) => el("span", { class: "tag" }, marked(v))) : "(none)");

function detail(q) {
  const parts = [el("h4", {}, "Question"), el("pre", {}, marked(q.question))];
  if (q.keywords !== null && q.keywords !== undefined) {
    parts.push(fact("keywords", tags(q.keywords)), fact("mapped keywords", tags(q.mapped)));
    parts.push(fact("fallback", q.fallback || "no (recruited by keywords)"));
  }
  if (list(q.experts).length) parts.push(fact("recruited", tags(q.experts)));
  if (q.consensus) parts.push(fact("consensus", "every expert gave the same answer; no aggregator call"));
  if (q.prompts_cut > 0) parts.push(fact("prompts cut", `${q.prompts_cut} prompt(s) quoting responses shortened to fit the reader's context`));
  for (const round of arrayOf(q.rounds)) parts.push(el("h4", {}, round.name), arrayOf(round.responses).map(said));
  if (q.votes) parts.push(fact("votes", tags(q.votes)));
  parts.push(el("h4", {}, "Final answer (" + q.final.who + ")"), el("pre", {}, marked(q.final.text)));
  parts.push(fact("answer read", el("span", { class: q.answer === INVALID ? "invalid" : q.score > 0 ? "right" : "wrong" }, q.answer)),
    fact("gold", q.gold), fact("score", q.score));
  return el("tr", { class: "detail" }, el("td", { colspan: 8 }, parts));
}

function questionRow(q, index) {
  const key = q.task + "/" + q.doc, open = state.open.has(key);
  const short = q.question.length > 160 ? q.question.slice(0, 157) + "..." : q.question;
  const row = el("tr", { class: "q" + (open ? " open" : ""), "data-index": index, "data-key": key,
    onclick: () => { open ? state.open.delete(key) : state.open.add(key); renderQuestions(); } },
    el("td", {}, q.task), el("td", {}, q.doc), el("td", {}, q.subject), el("td", { class: "question" }, marked(short)),
    el("td", {}, list(q.experts).join(", ")), el("td", { class: q.answer === INVALID ? "invalid" : "" }, q.answer),
    el("td", {}, q.gold), el("td", { class: q.score > 0 ? "right" : "wrong" }, q.score > 0 ? "\u2713" : "\u2717"));
  return open ? [row, detail(q)] : [row];
}

// Tasks routed with a profile other than their own (the run summary's profile_sources).
function profileSources(r) {
  const sources = Object.entries(r.profile_sources || {});
  return sources.length ? ". Profiles: " + sources.map(([task, source]) => `${task} ${source}`).join("; ") : "";
}

function renderQuestions() {
  const questions = run().questions.filter(matches);
  const pages = Math.max(1, Math.ceil(questions.length / PAGE_SIZE));
  state.page = Math.min(state.page, pages - 1);
  const start = state.page * PAGE_SIZE, shown = questions.slice(start, start + PAGE_SIZE);
  const right = questions.filter((q) => q.score > 0).length;
  const invalid = questions.filter((q) => q.answer === INVALID).length;
  $("count").textContent = `${questions.length} of ${run().questions.length} questions; accuracy ${questions.length ? pct(right / questions.length) : "-"}; ` +
    `${invalid} without an answer read. Run: ${run().label} (${run().results})` + profileSources(run());
  $("page").textContent = questions.length ? `${start + 1}-${start + shown.length} of ${questions.length} (page ${state.page + 1} of ${pages})` : "nothing matches";
  $("prev").disabled = state.page === 0;
  $("next").disabled = state.page >= pages - 1;
  $("questions").tBodies[0].replaceChildren(...shown.flatMap((q, i) => questionRow(q, start + i)));
  renderRecruitment(questions);
  saveState();
}

// ------------------------------------------------------------------ two runs side by side

const COMPARE = ["c-a", "c-b", "c-task", "c-cell"];
const PAIRS_SHOWN = 200;
const cellOf = (qa, qb) => (qa.score > 0 ? (qb.score > 0 ? "both" : "only_a") : qb.score > 0 ? "only_b" : "neither");

function fillCompare() {
  const labels = DATA.runs.map((r, i) => String(i));
  for (const [id, fallback] of [["c-a", "0"], ["c-b", "1"]]) {
    const select = $(id), kept = select.value;
    select.replaceChildren(...DATA.runs.map((r, i) => el("option", { value: i }, r.label)));
    select.value = labels.includes(kept) ? kept : labels.includes(fallback) ? fallback : "0";
  }
  const tasksOf = (i) => new Set(DATA.runs[Number(i)].questions.map((q) => q.task));
  const inB = tasksOf($("c-b").value);
  fillSelect("c-task", [...tasksOf($("c-a").value)].filter((t) => inB.has(t)).sort(), "choose");
  if (!$("c-task").value && $("c-task").options.length > 1) $("c-task").value = $("c-task").options[1].value;
}

// symoe compare's test of the pair (computed by report.py), from A's side.
function pairTest(a, b, task) {
  const test = (DATA.comparisons || {})[`${Math.min(a, b)}/${Math.max(a, b)}/${task}`];
  if (!test || test.refused) return { text: test ? String(test.refused) : "these runs share no task" };
  const [onlyA, onlyB] = a < b ? [test.only_a, test.only_b] : [test.only_b, test.only_a];
  return { text: `both right ${test.both}, only A right ${onlyA}, only B right ${onlyB}, both wrong ${test.neither}; ` +
    `exact McNemar p = ${String(test.p)} (as symoe compare)`, paired: true };
}

function renderCompare() {
  const a = Number($("c-a").value), b = Number($("c-b").value), task = $("c-task").value;
  const test = a === b ? { text: "choose two different runs" } : pairTest(a, b, task);
  $("c-test").textContent = test.text;
  const byDoc = new Map(DATA.runs[b].questions.filter((q) => q.task === task).map((q) => [q.doc, q]));
  const pairs = test.paired ? DATA.runs[a].questions.filter((q) => q.task === task && byDoc.has(q.doc)).map((q) => [q, byDoc.get(q.doc)]) : [];
  const shown = pairs.filter(([qa, qb]) => !$("c-cell").value || cellOf(qa, qb) === $("c-cell").value);
  $("c-count").textContent = `${shown.length} questions` + (shown.length > PAIRS_SHOWN ? ` (the first ${PAIRS_SHOWN} shown)` : "");
  const answer = (q) => el("td", { class: q.answer === INVALID ? "invalid" : q.score > 0 ? "right" : "wrong" }, q.answer, " ", q.score > 0 ? "\u2713" : "\u2717");
  $("c-questions").tBodies[0].replaceChildren(...shown.slice(0, PAIRS_SHOWN).map(([qa, qb]) => el("tr", { class: "pair", "data-doc": qa.doc },
    el("td", {}, qa.doc), el("td", { class: "question" }, qa.question.length > 120 ? qa.question.slice(0, 117) + "..." : qa.question),
    answer(qa), answer(qb), el("td", {}, list(qa.experts).join(", ")), el("td", {}, list(qb.experts).join(", ")))));
}

// ------------------------------------------------------------------ export

const EXPORTED = ["task", "doc", "subject", "question", "experts", "answer", "gold", "score", "keywords", "consensus", "fallback", "prompts_cut"];

// One exported row: the columns above, lists joined by "|" in CSV, the final text at the end.
function exportRow(q) {
  const row = {};
  for (const key of EXPORTED) row[key] = Array.isArray(q[key]) ? q[key].map(String) : q[key] === undefined ? null : q[key];
  row.final_text = q.final ? String(q.final.text) : "";
  return row;
}

const csvCell = (v) => { const s = v === null ? "" : Array.isArray(v) ? v.join("|") : String(v); return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; };

// Every question the filters select (all pages), as a file made in the page: no network.
function download(kind) {
  const rows = run().questions.filter(matches).map(exportRow);
  const columns = [...EXPORTED, "final_text"];
  const text = kind === "csv"
    ? [columns.join(","), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(","))].join("\r\n") + "\r\n"
    : rows.map((r) => JSON.stringify(r)).join("\n") + "\n";
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: kind === "csv" ? "text/csv" : "application/jsonl" })),
    download: `questions-${run().label.replace(/[^\w.-]+/g, "_").slice(0, 80)}.${kind}` });
  document.body.append(link);
  link.click();
  link.remove();
}

// ------------------------------------------------------------------ the view in the URL

// The run, filters, search, page, opened questions and leaderboard order, in the URL's fragment, so a
// reload or a sent link shows the same view (values a link cannot hold here are ignored).
function saveState() {
  const p = new URLSearchParams();
  if (state.run) p.set("run", state.run);
  for (const id of FILTERS) if ($(id).value) p.set(id.slice(2), $(id).value);
  if ($("f-search").value) p.set("search", $("f-search").value);
  if (state.page) p.set("page", state.page);
  for (const key of state.open) p.append("open", key);
  if (state.sortKey) { p.set("sort", state.sortKey); p.set("dir", state.sortDir); }
  for (const id of COMPARE) if ($(id).value) p.set(id, $(id).value);
  history.replaceState(null, "", "#" + p.toString());
}

function loadState() {
  const p = new URLSearchParams(location.hash.slice(1));
  const wanted = Number(p.get("run"));
  state.run = Number.isInteger(wanted) && wanted >= 0 && wanted < DATA.runs.length ? wanted : 0;
  $("f-run").value = String(state.run);
  fillFilters();
  for (const id of FILTERS) {
    const value = p.get(id.slice(2)) || "";
    $(id).value = [...$(id).options].some((o) => o.value === value) ? value : "";
  }
  $("f-search").value = p.get("search") || "";
  state.page = Math.max(0, Math.floor(Number(p.get("page"))) || 0);
  state.open = new Set(p.getAll("open"));
  state.sortKey = leaderboardColumns().some((c) => c.key === p.get("sort")) ? p.get("sort") : null;
  state.sortDir = p.get("dir") === "1" ? 1 : -1;
  for (const id of COMPARE) {
    const value = p.get(id);
    if (value !== null && [...$(id).options].some((o) => o.value === value)) $(id).value = value;
    if (id === "c-b") fillCompare();  // the tasks the chosen pair shares
  }
}

function restore() {
  fillCompare();
  loadState();
  renderLeaderboard();
  renderCompare();
  renderQuestions();
}

function init() {
  $("f-run").replaceChildren(...DATA.runs.map((r, i) => el("option", { value: i }, r.label)));
  $("f-run").addEventListener("change", () => { state.run = Number($("f-run").value); state.page = 0; state.open.clear(); fillFilters(); renderQuestions(); });
  for (const id of FILTERS) $(id).addEventListener("change", () => { state.page = 0; renderQuestions(); });
  $("f-search").addEventListener("input", () => { state.page = 0; renderQuestions(); });
  $("prev").addEventListener("click", () => { state.page -= 1; renderQuestions(); });
  $("next").addEventListener("click", () => { state.page += 1; renderQuestions(); });
  for (const id of COMPARE) {
    $(id).addEventListener("change", () => { if (id === "c-a" || id === "c-b") fillCompare(); renderCompare(); saveState(); });
  }
  $("export-csv").addEventListener("click", () => download("csv"));
  $("export-jsonl").addEventListener("click", () => download("jsonl"));
  window.addEventListener("hashchange", restore);
  renderPlots();
  restore();
  document.body.dataset.ready = "1";
}

init();

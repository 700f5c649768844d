"use strict";
// symoe report: renders the leaderboard and the question explorer from the JSON block above.
// Questions are filtered in memory and drawn one page at a time (PAGE_SIZE rows in the DOM).
const DATA = JSON.parse(document.getElementById("report-data").textContent);
const PAGE_SIZE = 50;
const INVALID = DATA.invalid;  // symoe_eval.runoutput.INVALID, handed over by report.py
const state = { run: 0, page: 0, open: new Set(), sortKey: null, sortDir: -1 };
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
    onclick: () => { state.sortDir = state.sortKey === c.key ? -state.sortDir : c.key === "run" ? 1 : -1; state.sortKey = c.key; renderLeaderboard(); },
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
  const words = f("f-search").trim().toLowerCase();
  return !words || q.question.toLowerCase().includes(words);
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
    el("pre", {}, response.text));
}

function fact(key, ...value) {
  return el("div", { class: "facts" }, el("span", { class: "k" }, key + ": "), ...value);
}

const tags = (values) => (list(values).length ? list(values).map((v) => el("span", { class: "tag" }, v)) : "(none)");

function detail(q) {
  const parts = [el("h4", {}, "Question"), el("pre", {}, q.question)];
  if (q.keywords !== null && q.keywords !== undefined) {
    parts.push(fact("keywords", tags(q.keywords)), fact("mapped keywords", tags(q.mapped)));
    parts.push(fact("fallback", q.fallback || "no (recruited by keywords)"));
  }
  if (list(q.experts).length) parts.push(fact("recruited", tags(q.experts)));
  if (q.consensus) parts.push(fact("consensus", "every expert gave the same answer; no aggregator call"));
  for (const round of arrayOf(q.rounds)) parts.push(el("h4", {}, round.name), arrayOf(round.responses).map(said));
  if (q.votes) parts.push(fact("votes", tags(q.votes)));
  parts.push(el("h4", {}, "Final answer (" + q.final.who + ")"), el("pre", {}, q.final.text));
  parts.push(fact("answer read", el("span", { class: q.answer === INVALID ? "invalid" : q.score > 0 ? "right" : "wrong" }, q.answer)),
    fact("gold", q.gold), fact("score", q.score));
  return el("tr", { class: "detail" }, el("td", { colspan: 8 }, parts));
}

function questionRow(q, index) {
  const key = q.task + "/" + q.doc, open = state.open.has(key);
  const short = q.question.length > 160 ? q.question.slice(0, 157) + "..." : q.question;
  const row = el("tr", { class: "q" + (open ? " open" : ""), "data-index": index, "data-key": key,
    onclick: () => { open ? state.open.delete(key) : state.open.add(key); renderQuestions(); } },
    el("td", {}, q.task), el("td", {}, q.doc), el("td", {}, q.subject), el("td", { class: "question" }, short),
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
}

function init() {
  $("f-run").replaceChildren(...DATA.runs.map((r, i) => el("option", { value: i }, r.label)));
  $("f-run").addEventListener("change", () => { state.run = Number($("f-run").value); state.page = 0; state.open.clear(); fillFilters(); renderQuestions(); });
  for (const id of ["f-task", "f-subject", "f-expert", "f-correct", "f-fallback"]) {
    $(id).addEventListener("change", () => { state.page = 0; renderQuestions(); });
  }
  $("f-search").addEventListener("input", () => { state.page = 0; renderQuestions(); });
  $("prev").addEventListener("click", () => { state.page -= 1; renderQuestions(); });
  $("next").addEventListener("click", () => { state.page += 1; renderQuestions(); });
  renderLeaderboard();
  renderPlots();
  fillFilters();
  renderQuestions();
  document.body.dataset.ready = "1";
}

init();

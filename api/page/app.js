// The at-risk page: polls the score API and redraws. No build step, no dependencies.
"use strict";

const REFRESH_MS = 5000;
const token = new URLSearchParams(location.search).get("token");
const headers = token ? { Authorization: `Bearer ${token}` } : {};

async function getJson(path) {
  const response = await fetch(path, { headers });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || `${path}: HTTP ${response.status}`);
  }
  return response.json();
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function sparkline(days) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 28");
  if (days && days.length > 1) {
    const first = Date.parse(days[0].day);
    const span = Math.max(1, Date.parse(days[days.length - 1].day) - first);
    const points = days.map((d) => {
      const x = ((Date.parse(d.day) - first) / span) * 118 + 1;
      const y = 27 - (d.score / 100) * 26;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
    svg.setAttribute("aria-label", `from ${days[0].score} to ${days[days.length - 1].score}`);
  }
  return svg;
}

function accountName(account, child) {
  const cell = element("td", { class: child ? "account child" : "account" }, account.account_id);
  if (account.rollup) {
    const { children, scored_children: scored } = account.rollup;
    cell.append(element("span", { class: "group" },
      `group of ${children}${scored < children ? ` (${scored} scored)` : ""}`));
  } else if (account.parent && !child) {
    cell.append(element("span", { class: "group" }, `in ${account.parent}`));
  }
  return cell;
}

// "enterprise: healthy from 85, at-risk from 60": why two equal scores can sit in two bands.
function segmentWords(account) {
  const bands = (account.bands || []).filter((band) => band.min > 0)
    .map((band) => `${band.label} from ${band.min}`).join(", ");
  return `${account.segment || "default"}${bands ? `: ${bands}` : ""}`;
}

// The API's summaries give drivers and drags as words; an account's detail gives objects.
const words = (items) => (items || []).map((item) => (typeof item === "string" ? item : item.text));

function list(className, items, empty) {
  if (!items.length) return element("p", { class: "empty" }, empty);
  return element("ul", { class: className }, ...items.map((text) => element("li", {}, text)));
}

function accountRow(account, rank, child = false) {
  const score = element("span", { class: `score band-${account.band}` }, account.score.toFixed(1));
  const scoreCell = element("td", {}, score, element("span", { class: "band-label" }, account.band));
  if (account.onboarding) {
    const { days_of_data: days, judged_from_day: from } = account.onboarding;
    scoreCell.append(element("span", { class: "new", title: "youth not counted, no band alerts" },
      `new: ${days} of ${from} days of data`));
  }
  if (account.stale) scoreCell.append(element("span", { class: "stale" }, "no recent data"));
  scoreCell.append(element("span", { class: "segment" }, segmentWords(account)));
  const drivers = list("drivers", words(account.drivers),
    account.previous_score === null ? "first score" : "no change since its last update");
  const drags = list("drags", words(account.drags), "nothing costs it a point");
  const attributes = { "data-account": account.account_id };
  if (child) attributes["data-parent"] = account.parent;
  return element("tr", attributes,
    element("td", {}, child ? "" : String(rank)),
    accountName(account, child),
    scoreCell,
    element("td", {}, sparkline(account.history)),
    element("td", {}, drags),
    element("td", {}, drivers),
    element("td", {}, account.owner || "-"));
}

function alertItem(alert) {
  const when = new Date(alert.occurred_at).toLocaleString();
  return element("li", { class: alert.severity },
    element("strong", {}, alert.title),
    element("time", { datetime: alert.occurred_at }, `${alert.severity} · ${when}`));
}

function auditRows(report) {
  return report.models.flatMap((model) => model.leads.map((lead) => {
    const name = `${model.role} ${model.model_version.split("@")[0]}`;
    const auc = lead.auc === null ? "-"
      : `${lead.auc.toFixed(2)}${lead.auc_stderr === null ? "" : ` ± ${lead.auc_stderr.toFixed(2)}`}`;
    const row = element("tr", { class: lead.note ? "thin" : "", title: lead.note || "" },
      element("td", {}, name),
      element("td", {}, `${lead.lead_days} d`),
      element("td", { class: "auc" }, auc),
      element("td", {}, lead.lift === null ? "-" : `${lead.lift.toFixed(1)}×`),
      element("td", {}, String(lead.churners)));
    return row;
  }));
}

async function refreshAudit() {
  const status = document.getElementById("audit-status");
  try {
    const report = await getJson("/audit");
    document.querySelector("#audit-figures tbody").replaceChildren(...auditRows(report));
    const outcomes = Object.entries(report.outcomes).map(([kind, n]) => `${n} ${kind}`).join(", ");
    status.textContent = `churns of the last ${report.window_days} days` +
      ` · outcomes: ${outcomes || "none yet"}`;
    // How many churners each lead judged and why the others are not, in words, not on hover.
    const churned = report.outcomes.churned || 0;
    const live = report.models.find((model) => model.role === "live");
    const notes = (live ? live.leads : []).map((lead) => {
      const missing = churned - lead.churners;
      const why = missing > 0
        ? `; ${missing} not: no score of theirs ${lead.lead_days} days before the churn yet ` +
          "(their data starts later, or the churn is under a day old)"
        : "";
      return `${lead.lead_days} days before: ${lead.churners} of ${churned} churners judged${why}` +
        `${lead.note && lead.churners ? ` (${lead.note})` : ""}`;
    });
    document.getElementById("audit-notes").replaceChildren(
      ...notes.map((note) => element("li", {}, note)));
  } catch (error) {
    status.textContent = error.message;
  }
}

// Grouped, every account of the worst-first list shows with its group: a child at risk
// brings its parent, and its brothers and sisters, to the rank of the group's worst member.
async function accountRows(page, grouped) {
  if (!grouped) return page.items.map((account, i) => accountRow(account, i + 1));
  const byId = new Map(page.items.map((account) => [account.account_id, account]));
  const groups = [];
  for (const account of page.items) {
    const key = account.rollup ? account.account_id : (account.parent || account.account_id);
    if (!groups.includes(key)) groups.push(key);
  }
  const drawn = await Promise.all(groups.map(async (key) => {
    const head = byId.get(key) || await getJson(`/accounts/${encodeURIComponent(key)}`);
    if (!head.rollup) return [head, []];
    const query = new URLSearchParams({ parent: key, limit: "50", history: "true" });
    return [head, (await getJson(`/accounts?${query}`)).items];
  }));
  return drawn.flatMap(([head, children], i) => [
    accountRow(head, i + 1),
    ...children.map((child) => accountRow(child, 0, true)),
  ]);
}

async function refresh() {
  const form = new FormData(document.getElementById("filters"));
  const grouped = form.get("grouped") === "on";
  const query = new URLSearchParams({ limit: "50", history: "true" });
  for (const name of ["band", "owner"]) if (form.get(name)) query.set(name, form.get(name));
  const status = document.getElementById("status");
  try {
    const [page, alerts] = await Promise.all([
      getJson(`/accounts?${query}`), getJson("/alerts?limit=20"),
    ]);
    document.querySelector("#accounts tbody").replaceChildren(...await accountRows(page, grouped));
    document.getElementById("alerts").replaceChildren(...alerts.alerts.map(alertItem));
    status.className = "";
    status.textContent = `${page.items.length} accounts · updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.className = "error";
    status.textContent = `Not updated: ${error.message}`;
  }
}

document.getElementById("filters").addEventListener("change", refresh);
refresh();
refreshAudit();
setInterval(refresh, REFRESH_MS);
setInterval(refreshAudit, REFRESH_MS);

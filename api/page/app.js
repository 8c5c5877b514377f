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

function accountRow(account, rank, child = false) {
  const score = element("span", { class: `score band-${account.band}` }, account.score.toFixed(1));
  const scoreCell = element("td", {}, score, element("span", { class: "band-label" }, account.band));
  if (account.stale) scoreCell.append(element("span", { class: "stale" }, "no recent data"));
  const drivers = element("ul", { class: "drivers" },
    ...account.drivers.map((text) => element("li", {}, text)));
  const drags = element("ul", { class: "drags" },
    ...(account.drags || []).map((text) => element("li", {}, text)));
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
  } catch (error) {
    status.textContent = error.message;
  }
}

// Grouped, a parent's children follow it (worst first); the filters pick the top level.
async function accountRows(page, grouped) {
  if (!grouped) return page.items.map((account, i) => accountRow(account, i + 1));
  const children = await Promise.all(page.items.map((account) => account.rollup
    ? getJson(`/accounts?${new URLSearchParams({ parent: account.account_id, limit: "50", history: "true" })}`)
    : { items: [] }));
  return page.items.flatMap((account, i) => [
    accountRow(account, i + 1),
    ...children[i].items.map((child) => accountRow(child, 0, true)),
  ]);
}

async function refresh() {
  const form = new FormData(document.getElementById("filters"));
  const grouped = form.get("grouped") === "on";
  const query = new URLSearchParams({ limit: "50", history: "true" });
  for (const name of ["band", "owner"]) if (form.get(name)) query.set(name, form.get(name));
  if (grouped) query.set("top_level", "true");
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

// Checks the project's queries and dashboards with Grafana's and Prometheus' own packages, in one
// node process (tests/ops/test_grafana_checks.py runs it; scripts/test installs the packages from
// tests/package.json into tests/node_modules).
//
//   node tests/grafana_check.cjs JOB.json RESULT.json
//
// JOB: {logql: [[where, expr]], promql: [[where, expr]], units: [[where, unit]],
//       dashboards: {name: json}, workdir: "a scratch folder under tests/node_modules"}
// RESULT: {logql: [{where, expr, error}], promql: [...], units: [{where, unit}],
//          known_units: N, schema: ["file:line: message\n  source line"], versions: {...}}
//
// * LogQL with @grafana/lezer-logql and PromQL with @prometheus-io/lezer-promql: Lezer parsers
//   recover from errors by inserting error nodes, so an expression is valid when its tree has none.
// * Dashboards with the TypeScript compiler against @grafana/schema's Dashboard type (string
//   enums accepted as their values, as JSON has no enums), each panel's options and custom field
//   config against its plugin's composable types (partial: Grafana fills in the plugin's defaults),
//   and each Loki target against LokiDataQuery.
// * Units against @grafana/data's value formats (the unit picker's list).
"use strict";

const fs = require("fs");
const path = require("path");

const [jobFile, resultFile] = process.argv.slice(2);
const job = JSON.parse(fs.readFileSync(jobFile, "utf8"));
const MODULES = path.join(__dirname, "node_modules");

function version(name) {
  return JSON.parse(fs.readFileSync(path.join(MODULES, name, "package.json"), "utf8")).version;
}

function syntaxErrors(parser, list) {
  const bad = [];
  for (const [where, expr] of list) {
    const at = [];
    parser.parse(expr).iterate({
      enter: (node) => {
        if (node.type.isError) at.push(node.from);
      },
    });
    if (at.length) {
      const p = at[0];
      bad.push({ where, expr, error: `syntax error at ${p}: ${expr.slice(0, p)} >>> ${expr.slice(p)}` });
    }
  }
  return bad;
}

function knownUnits() {
  // @grafana/data's bundle is written for a browser; these stubs are all it needs to load in node.
  const noop = () => {};
  const element = () => ({ appendChild: noop, setAttribute: noop, style: {}, sheet: { insertRule: noop, cssRules: [] } });
  globalThis.window = globalThis;
  globalThis.document = {
    head: element(), body: element(), documentElement: element(), createElement: element,
    createTextNode: element, addEventListener: noop, getElementsByTagName: () => [element()],
    querySelector: () => null,
  };
  Object.assign(globalThis, {
    history: { pushState: noop, replaceState: noop },
    location: { href: "http://localhost/", pathname: "/", search: "", hash: "" },
    addEventListener: noop, removeEventListener: noop,
    localStorage: { getItem: () => null, setItem: noop, removeItem: noop },
    matchMedia: () => ({ matches: false, addListener: noop, addEventListener: noop }),
  });
  if (!globalThis.navigator || !globalThis.navigator.languages) {
    Object.defineProperty(globalThis, "navigator", {
      value: { userAgent: "node", language: "en-US", languages: ["en-US"] },
      configurable: true,
    });
  }
  const log = console.log;
  console.log = noop; // i18next announces itself on load
  try {
    const data = require("@grafana/data");
    const ids = new Set();
    for (const category of data.getValueFormats()) for (const unit of category.submenu) ids.add(unit.value);
    return ids;
  } finally {
    console.log = log;
  }
}

// ----------------------------------------------------------------- schema

const SCHEMA_TYPES = path.join(MODULES, "@grafana/schema/dist/types");
const PRELUDE = `
type Json<T> = T extends string ? \`\${T}\` : T extends number | boolean | null | undefined ? T
  : T extends Array<infer U> ? Array<Json<U>> : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
type Partly<T> = T extends string ? \`\${T}\` : T extends number | boolean | null | undefined ? T
  : T extends Array<infer U> ? Array<Partly<U>> : T extends object ? { [K in keyof T]?: Partly<T[K]> } : T;
`;

function panelTypes(type) {
  const dir = path.join(SCHEMA_TYPES, "raw/composable", type.replace(/-/g, ""), "panelcfg/x");
  if (!fs.existsSync(dir)) return null;
  const file = fs.readdirSync(dir).find((f) => f.endsWith(".d.ts"));
  const text = fs.readFileSync(path.join(dir, file), "utf8");
  return {
    module: path.join(dir, file.replace(/\.d\.ts$/, "")),
    options: /export interface Options\b/.test(text),
    fieldConfig: /export interface FieldConfig\b/.test(text),
  };
}

function allPanels(dash) {
  const out = [];
  for (const p of dash.panels || []) {
    out.push(p);
    for (const inner of p.panels || []) out.push(inner);
  }
  return out;
}

function schemaFile(name, dash) {
  const lines = [`import type { Dashboard } from "@grafana/schema";`];
  const loki = path.join(SCHEMA_TYPES, "raw/composable/loki/dataquery/x/LokiDataQuery_types.gen");
  lines.push(`import type { LokiDataQuery, LokiQueryType } from "${loki}";`);
  lines.push(PRELUDE);
  lines.push(`export const dashboard: Json<Dashboard> = ${JSON.stringify(dash, null, 2)};`);
  allPanels(dash).forEach((panel, i) => {
    const where = `panel ${JSON.stringify(panel.title)}`;
    const types = panelTypes(panel.type);
    if (!types && panel.type !== "row") {
      lines.push(`// ${where}: no composable schema for panel type ${panel.type}`);
      lines.push(`export const unknown_${i}: "a panel type Grafana knows" = ${JSON.stringify(panel.type)};`);
      return;
    }
    if (types && types.options) {
      lines.push(`// ${where}: options`);
      lines.push(`export const options_${i}: Partly<import("${types.module}").Options> = ${JSON.stringify(panel.options || {}, null, 2)};`);
    }
    const custom = ((panel.fieldConfig || {}).defaults || {}).custom;
    if (types && types.fieldConfig && custom) {
      lines.push(`// ${where}: fieldConfig.defaults.custom`);
      lines.push(`export const custom_${i}: Partly<import("${types.module}").FieldConfig> = ${JSON.stringify(custom, null, 2)};`);
    }
    (panel.targets || []).forEach((target, j) => {
      const ds = target.datasource || panel.datasource || {};
      if (ds.type === "loki") {
        lines.push(`// ${where}: target ${target.refId}`);
        // queryType comes from DataQuery (any string); Loki's own are LokiQueryType's.
        const type = "Json<LokiDataQuery> & { queryType?: `${LokiQueryType}` }";
        lines.push(`export const loki_${i}_${j}: ${type} = ${JSON.stringify(target, null, 2)};`);
      }
    });
  });
  return lines.join("\n") + "\n";
}

function schemaErrors(dashboards, workdir) {
  const ts = require("typescript");
  fs.mkdirSync(workdir, { recursive: true });
  const files = [];
  for (const [name, dash] of Object.entries(dashboards)) {
    const file = path.join(workdir, name.replace(/\W/g, "_") + ".ts");
    fs.writeFileSync(file, schemaFile(name, dash));
    files.push(file);
  }
  const program = ts.createProgram(files, {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    skipLibCheck: true,
    types: [],
  });
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
    if (!d.file) return message;
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const source = d.file.text.split("\n")[line];
    return `${path.basename(d.file.fileName)}:${line + 1}: ${message}\n  ${source.trim()}`;
  });
}

// ----------------------------------------------------------------- main

const result = {
  versions: {},
  logql: syntaxErrors(require("@grafana/lezer-logql").parser, job.logql || []),
  promql: syntaxErrors(require("@prometheus-io/lezer-promql").parser, job.promql || []),
};
for (const name of ["@grafana/lezer-logql", "@prometheus-io/lezer-promql", "@grafana/schema", "@grafana/data", "typescript"]) {
  result.versions[name] = version(name);
}
if (job.units) {
  const known = knownUnits();
  result.known_units = known.size;
  // Custom units: getValueFormat() in @grafana/data reads these prefixes ("suffix: records/s").
  const custom = /^(prefix|suffix|si|count|currency|time):./;
  const ok = (unit) => known.has(unit) || custom.test(unit);
  result.units = job.units.filter(([, unit]) => !ok(unit)).map(([where, unit]) => ({ where, unit }));
}
if (job.dashboards) result.schema = schemaErrors(job.dashboards, job.workdir);
fs.writeFileSync(resultFile, JSON.stringify(result, null, 1));

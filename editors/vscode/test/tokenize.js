// Tokenises every shipped .flow file (processes/, tests/patterns/, tests/migrations/) with the
// extension's TextMate grammar, as VS Code does (vscode-textmate + vscode-oniguruma), and checks
// the scopes of comments, labels and other strings, step declarations, clause keywords,
// durations, dates and `rules.` references. Exits 1 on the first file that breaks.
"use strict";
const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const root = path.resolve(__dirname, "../../..");
const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm")).buffer;

function flowFiles(dir) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...flowFiles(p));
    else if (entry.name.endsWith(".flow")) out.push(p);
  }
  return out.sort();
}

async function main() {
  await oniguruma.loadWASM(wasm);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async () =>
      vsctm.parseRawGrammar(
        fs.readFileSync(path.join(__dirname, "../syntaxes/flow.tmLanguage.json"), "utf8"),
        "flow.tmLanguage.json",
      ),
  });
  const grammar = await registry.loadGrammar("source.flow");
  const files = ["processes", "tests/patterns", "tests/migrations"].flatMap((d) => flowFiles(path.join(root, d)));
  if (files.length < 10) throw new Error(`only ${files.length} .flow files found`);
  const seen = { comment: 0, label: 0, string: 0, step: 0, keyword: 0, duration: 0, rules: 0 };
  const failures = [];
  for (const file of files) {
    const lines = fs.readFileSync(file, "utf8").split("\n");
    let state = vsctm.INITIAL;
    lines.forEach((line, i) => {
      const result = grammar.tokenizeLine(line, state);
      state = result.ruleStack;
      const scopeAt = (col) => {
        const t = result.tokens.find((t) => t.startIndex <= col && col < t.endIndex);
        return t ? t.scopes.join(" ") : "";
      };
      const where = `${path.relative(root, file)}:${i + 1}`;
      const expect = (col, scope, what) => {
        if (!scopeAt(col).includes(scope)) {
          failures.push(`${where}:${col + 1}: ${what} should be ${scope}, is "${scopeAt(col)}"`);
        }
      };
      const trimmed = line.trimStart();
      const indent = line.length - trimmed.length;
      if (trimmed.startsWith("#")) {
        expect(indent, "comment.line.number-sign.flow", "a comment");
        seen.comment++;
        return;
      }
      // Code before any comment, with strings blanked out so that no word inside one counts.
      const code = line.replace(/"(?:[^"\\]|\\.)*"/g, (s) => " ".repeat(s.length)).replace(/#.*$/, "");
      const step = /^(\s*)(task|auto|wait|split|join|call|end)\s+([A-Za-z_]\w*)/.exec(code);
      if (step) {
        expect(step[1].length, "keyword.declaration.step.flow", `\`${step[2]}\``);
        expect(line.indexOf(step[3], step[1].length + step[2].length), "entity.name.function.step.flow", "a step's name");
        seen.step++;
        const label = line.indexOf('"');
        if (label > 0 && label < (line.indexOf("#") === -1 ? line.length : line.indexOf("#"))) {
          expect(label, "string.quoted.double.flow", "a step's label");
          expect(label + 1, "string.quoted.double.flow", "a step's label");
          seen.label++;
        }
      }
      const clause = /^(\s*)(assign|due|asks|remind|source|fields|start|when|keep|key)\b/.exec(code);
      if (clause) {
        expect(clause[1].length, "keyword.other.flow", `\`${clause[2]}\``);
        seen.keyword++;
      }
      for (const m of code.matchAll(/\b\d+[ \t]+(?:workdays?|workhours?|minutes?|hours?|days?|weeks?|seconds?)\b/g)) {
        expect(m.index, "constant.numeric.duration.flow", `the duration \`${m[0]}\``);
        expect(m.index + m[0].length - 1, "constant.numeric.duration.flow", `the duration \`${m[0]}\``);
        seen.duration++;
      }
      for (const m of code.matchAll(/\brules\.[A-Za-z_]\w*/g)) {
        expect(m.index, "variable.language.rules.flow", "`rules`");
        seen.rules++;
      }
      for (const m of line.matchAll(/"(?:[^"\\]|\\.)*"/g)) {
        if (line.slice(0, m.index).includes("#")) break;
        expect(m.index + 1, "string.quoted.double.flow", "a string");
        // A keyword inside a string is part of the string.
        seen.string++;
      }
      const comment = code.length < line.length ? line.indexOf("#", code.replace(/\s+$/, "").length) : -1;
      if (comment >= 0 && line[comment] === "#") {
        expect(comment, "comment.line.number-sign.flow", "a trailing comment");
        seen.comment++;
      }
    });
  }
  for (const [what, n] of Object.entries(seen)) {
    if (n === 0) failures.push(`no ${what} was checked: the test lost its reach`);
  }
  if (failures.length) {
    console.error(failures.slice(0, 40).join("\n"));
    console.error(`${failures.length} scope(s) wrong`);
    process.exit(1);
  }
  console.log(`tokenised ${files.length} .flow files; scopes checked: ${Object.entries(seen).map(([k, v]) => `${k} ${v}`).join(", ")}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

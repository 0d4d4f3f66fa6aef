// caseflow console: live inbox updates over the event stream, keys, select-all.
// Every page works without this script; it only saves reloads and mouse trips.
(function () {
  "use strict";
  const rows = document.getElementById("rows");

  // Live updates: the server sends an event when a task of this person or their roles changes;
  // the table's rows are fetched again (with the page's filters) and the change is counted.
  if (rows && window.EventSource) {
    let changes = 0, pending = null;
    const live = document.querySelector(".live"), count = document.getElementById("changes");
    const refresh = () => {
      const url = new URL(window.location.href);
      url.searchParams.set("fragment", "rows");
      url.searchParams.delete("done");
      fetch(url, { headers: { "x-requested-with": "caseflow" } })
        .then(r => { if (r.status === 401) { window.location.reload(); return null; } return r.ok ? r.text() : null; })
        .then(html => { if (html !== null) { rows.innerHTML = html; bindRows(); } });
    };
    // One event per burst of changes; its data says how many.
    const changed = (e) => {
      let n = 1;
      try { n = JSON.parse(e.data).changes || 1; } catch (_) { /* a count of one */ }
      changes += n;
      count.textContent = String(changes);
      live.hidden = false;
      clearTimeout(pending);
      pending = setTimeout(refresh, 300); // one fetch for a burst of events
    };
    const source = new EventSource("/ui/events");
    source.addEventListener("task", changed);
  }

  // The case page: bring the step the case is at into view.
  const here = document.querySelector(".diagram g.current");
  if (here) here.scrollIntoView({ block: "center", inline: "center" });

  // Keys (documented on the page under `?`).
  let cursor = -1;
  const list = () => rows ? Array.from(rows.querySelectorAll("tr")) : [];
  const move = (i) => {
    const all = list();
    if (!all.length) return;
    cursor = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((r, k) => r.classList.toggle("cursor", k === cursor));
    all[cursor].scrollIntoView({ block: "nearest" });
  };
  const bindRows = () => {
    list().forEach(r => {
      const box = r.querySelector("input[type=checkbox]");
      if (box) box.addEventListener("change", () => r.classList.toggle("selected", box.checked));
    });
    if (cursor >= 0) move(cursor);
  };
  bindRows();
  const all = document.getElementById("select-all");
  if (all) all.addEventListener("change", () => list().forEach(r => {
    const box = r.querySelector("input[type=checkbox]");
    if (box) { box.checked = all.checked; r.classList.toggle("selected", all.checked); }
  }));
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA") && t.type !== "checkbox") return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const current = list()[cursor];
    if (e.key === "?") { const d = document.getElementById("keys"); if (d) d.showModal(); }
    else if (e.key === "j") move(cursor + 1);
    else if (e.key === "k") move(cursor - 1);
    else if (e.key === "Enter" && current) { const a = current.querySelector("a.open"); if (a) window.location.href = a.href; }
    else if (e.key === "x" && current) { const b = current.querySelector("input[type=checkbox]"); if (b) { b.click(); } }
    else if (e.key === "c") {
      const form = document.getElementById("bulk");
      if (!form) return;
      if (current && !list().some(r => r.querySelector("input:checked"))) current.querySelector("input[type=checkbox]").checked = true;
      const claim = form.querySelector("button[value=claim]");
      if (claim) claim.click();
    }
    else if (e.key === "/") { const f = document.querySelector("form.filters select"); if (f) { e.preventDefault(); f.focus(); } }
    else return;
  });
})();

// The little the pages need a script for: the overview follows the index, and dragging one person
// onto another merges them. Everything else works without it.
(function () {
  "use strict";
  const status = document.getElementById("status");
  if (status) {
    setInterval(async () => {
      const s = await (await fetch("/api/status", {credentials: "same-origin"})).json();
      const set = (key, text) => { const cell = status.querySelector(`[data-live="${key}"]`); if (cell) cell.textContent = text; };
      set("daemon", s.daemon.running ? `running (pid ${s.daemon.pid}, since ${s.daemon.started_at})` : "not running");
      set("queue", `${s.queue.pending} pending, ${s.queue.processing} processing`);
      set("files", `${s.files.total} known: ${s.files.done} done, ${s.files.failed} failed, ${s.files.missing} missing`);
      set("faces", `${s.faces} in ${s.files.with_faces} files`);
      set("people", `${s.people.persons} (${s.people.named} named), ${s.people.faces_waiting} faces waiting`);
    }, 5000);
  }
  const merge = document.getElementById("merge");
  let dragged = null;
  for (const card of document.querySelectorAll(".card[data-person]")) {
    card.addEventListener("dragstart", () => { dragged = card.dataset.person; });
    card.addEventListener("dragover", (e) => { if (dragged && dragged !== card.dataset.person) { e.preventDefault(); card.classList.add("over"); } });
    card.addEventListener("dragleave", () => card.classList.remove("over"));
    card.addEventListener("drop", (e) => {
      e.preventDefault();
      if (!merge || !dragged || dragged === card.dataset.person) return;
      for (const box of merge.querySelectorAll('input[name="person"]')) box.checked = box.value === dragged;
      merge.querySelector('select[name="into"]').value = card.dataset.person;
      merge.submit();
    });
  }
})();

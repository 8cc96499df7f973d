// The segment list's "Size now" column: each row's size is counted after the page is drawn,
// as the row comes into view, by the same view that counts the editor's live size (a GET of
// preview/?segment=<pk>). A count over a million users takes a good part of a second: the
// list does not wait for them, and two at a time keep one page view from taking the database.
// A static file with no inline handlers, so a strict Content-Security-Policy allows it.
(function () {
  "use strict";
  const AT_ONCE = 2;

  // "1 user · 2 devices", as the list has always said it.
  function size(users, devices) {
    return `${users.toLocaleString()} user${users === 1 ? "" : "s"} · ` +
      `${devices.toLocaleString()} device${devices === 1 ? "" : "s"}`;
  }

  function init() {
    const cells = Array.from(document.querySelectorAll(".segment-size[data-url]"));
    if (!cells.length) return;
    const waiting = [];
    let running = 0;

    async function count(cell) {
      cell.textContent = "Counting …";
      try {
        const response = await fetch(cell.dataset.url, {credentials: "same-origin",
                                                         headers: {Accept: "application/json"}});
        const body = response.ok || response.status === 400 ? await response.json() : {};
        if (response.status === 400 && body.text) {  // saved rules that cannot be used: counting again will not help
          cell.textContent = "Rules cannot be used";
          cell.title = body.text;
          cell.classList.add("segment-size-unusable");
          return;
        }
        if (!body.ok) throw new Error(`HTTP ${response.status}`);
        cell.textContent = size(body.users, body.devices);
        cell.title = `Counted at ${new Date().toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})}`;
      } catch (e) {
        const again = document.createElement("button");
        again.type = "button";
        again.className = "segment-size-again";
        again.textContent = "Count again";
        again.addEventListener("click", () => { take(cell); });
        cell.replaceChildren("Not counted. ", again);
      }
    }
    async function next() {
      while (waiting.length) {
        await count(waiting.shift());
      }
      running -= 1;
    }
    function take(cell) {
      waiting.push(cell);
      if (running < AT_ONCE) { running += 1; next(); }
    }

    if (!("IntersectionObserver" in window)) { cells.forEach(take); return; }
    const seen = new IntersectionObserver((entries) => {
      entries.filter((e) => e.isIntersecting).forEach((e) => { seen.unobserve(e.target); take(e.target); });
    }, {rootMargin: "200px 0px"});
    cells.forEach((cell) => seen.observe(cell));
  }
  document.addEventListener("DOMContentLoaded", init);
})();

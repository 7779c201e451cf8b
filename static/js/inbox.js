/* Keyboard shortcuts for the review inbox and the item page.
 *
 *   j / k     select the next / previous item (inbox)
 *   o         open the selected item
 *   a         approve the selected item (a sampled one: "Looks right")
 *   e         edit the selected item, then approve it
 *   r         reject the selected item: opens and focuses the reason field
 *   ?         show or hide the keys
 *
 * Keys are ignored while typing in a field or with a modifier held. Each item is an element
 * with [data-item]; inside it, [data-key=approve|edit|reject|open] mark what the keys use,
 * and [data-reject-note] the reason field. Loaded with <script defer>; no inline JavaScript,
 * so a Content-Security-Policy without 'unsafe-inline' holds. Everything works without it.
 */
(function () {
  "use strict";

  var SELECTED = "is-selected";
  var selectedId = null;

  function items() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-item]"));
  }

  function current() {
    var list = items();
    if (selectedId) {
      var found = document.getElementById(selectedId);
      if (found && found.hasAttribute("data-item")) return found;
    }
    return list.length === 1 ? list[0] : null;
  }

  function select(item) {
    items().forEach(function (el) {
      el.classList.remove(SELECTED);
      el.removeAttribute("aria-current");
    });
    if (!item) { selectedId = null; return; }
    item.classList.add(SELECTED);
    item.setAttribute("aria-current", "true");
    selectedId = item.id || null;
    item.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    var list = items();
    if (!list.length) return;
    var index = list.indexOf(current());
    var next = index < 0 ? (step > 0 ? 0 : list.length - 1)
      : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[next]);
  }

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function openAndFocus(marker, item) {
    if (marker.tagName.toLowerCase() === "summary") {
      marker.parentElement.open = true;
      var field = marker.parentElement.querySelector(
        "[data-reject-note], textarea, input:not([type=hidden]), select");
      if (field) field.focus();
      return;
    }
    if (marker.tagName.toLowerCase() === "a") { window.location.assign(marker.href); return; }
    marker.focus();
    if (marker !== document.activeElement && item) item.focus();
  }

  function act(key) {
    var item = current();
    if (!item) return false;
    var marker = item.querySelector('[data-key="' + key + '"]');
    if (!marker) return false;
    if (key === "approve") {
      var form = marker.closest("form");
      if (form && form.classList.contains("htmx-request")) return true;  // already on its way
      marker.click();
      return true;
    }
    openAndFocus(marker, item);
    return true;
  }

  function help() {
    var dialog = document.getElementById("keys-help");
    if (!dialog || typeof dialog.showModal !== "function") return;
    if (dialog.open) dialog.close(); else dialog.showModal();
  }

  function flash(text) {
    var box = document.getElementById("review-flash");
    if (!box) return;
    var p = document.createElement("p");
    p.className = "flash flash-error";
    p.textContent = text;
    box.replaceChildren(p);
  }

  document.addEventListener("keydown", function (event) {
    // A held key repeats: never let that approve one row after another.
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target) || event.defaultPrevented) return;
    var dialog = document.getElementById("keys-help");
    if (dialog && dialog.open && event.key !== "?") return;
    var handled = true;
    switch (event.key) {
      case "j": move(1); break;
      case "k": move(-1); break;
      case "a": handled = act("approve"); break;
      case "e": handled = act("edit"); break;
      case "r": handled = act("reject"); break;
      case "o": handled = items().length > 1 && act("open"); break;
      case "?": help(); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var opener = event.target.closest && event.target.closest("[data-keys-help]");
    if (opener) { help(); return; }
    var item = event.target.closest && event.target.closest("[data-item]");
    if (item && items().length > 1) select(item);
  });

  // After a decision swaps a row out, select the row that took its place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || target.id !== selectedId) return;
    var list = items();
    var index = list.indexOf(target);
    var neighbour = list[index + 1] || list[index - 1] || null;
    document.addEventListener("htmx:afterSettle", function reselect() {
      document.removeEventListener("htmx:afterSettle", reselect);
      var again = target.id && document.getElementById(target.id);
      select(again && again.isConnected ? again : (neighbour && neighbour.isConnected ? neighbour : null));
    });
  });

  // htmx does not swap error answers: say what happened instead of doing nothing.
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    flash(status === 403 ? "You may not decide this item." :
      status === 404 ? "This item is gone or hidden from you." :
      "Something went wrong (" + status + "). Nothing was changed; try again.");
  });
  document.addEventListener("htmx:sendError", function () {
    flash("The server did not answer. Nothing was changed; try again.");
  });
})();

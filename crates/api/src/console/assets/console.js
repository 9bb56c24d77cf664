// Herald console: live refresh of the overview and confirmation dialogs. Everything works
// without this script (plain forms and links); it only adds comfort.
"use strict";

// A form with data-confirm asks before it is sent.
document.addEventListener("submit", function (event) {
  var message = event.target.getAttribute("data-confirm");
  if (message && !window.confirm(message)) {
    event.preventDefault();
  }
});

// An element with data-live="URL" has its content replaced by URL's answer every 2 s, while
// the page is visible (a hidden tab asks nothing, so an unwatched console costs nothing).
document.addEventListener("DOMContentLoaded", function () {
  var live = document.querySelector("[data-live]");
  if (!live) {
    return;
  }
  var url = live.getAttribute("data-live");
  var busy = false;
  setInterval(function () {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/console/signin");
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
      });
  }, 2000);
});

// Shared by every console page: calls to /api/v1 with the session cookie and the page's
// CSRF token, and small formatting helpers. Plain JavaScript, no build step.
"use strict";

const TEC = (() => {
  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") : "";
  };

  /** Calls the API; resolves to the parsed JSON, or rejects with the API's error message. */
  async function api(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": meta("csrf-token"), Accept: "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error ? data.error : `${response.status} ${response.statusText}`;
      throw new Error(message);
    }
    return data;
  }

  /** "42 s", "3 min 05 s", "2 h 10 min". */
  function duration(ms) {
    const s = Math.max(0, Math.floor(ms / 1000));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
    return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  }

  /** Shows a message in the page's status region (read out by screen readers). */
  function say(message, isError) {
    const region = document.getElementById("status");
    if (!region) return;
    region.textContent = message;
    region.classList.toggle("error", !!isError);
  }

  return { api, duration, say, meta };
})();

// The alert queue (/queue): rows kept current from the alert stream, answer-time clocks ticking
// on the server's time, a cue for each new life-safety alarm, and acknowledge / note / resolve
// in place for operators. The server renders everything; this script only refreshes the
// <tbody> from /queue/rows and calls /api/v1. Plain JavaScript, no build step.
"use strict";

(() => {
  const table = document.getElementById("queue");
  if (!table) return;

  // The TEC Quality standard's marks (queue.rs applies the same rule to the first render).
  const TARGET_MS = 60000;
  const LIMIT_MS = 180000;
  const POLL_MS = 30000;
  const RECONNECT_MS = 10000;

  const streamState = document.getElementById("stream-state");
  const soundButton = document.getElementById("enable-sound");
  const soundState = document.getElementById("sound-state");

  /** Server time minus browser time: clocks use the server's now, never the browser's alone. */
  let offsetMs = 0;
  /** Alert ids already shown: a life-safety id not among them is a new alarm. */
  const seen = new Set();
  /** New life-safety alarms still waiting for an answer: their rows keep the cue. */
  const newAlarms = new Set();
  /** Where focus should go after the next refresh when an action took it away (a disabled button). */
  let focusHint = null;
  /** Alerts this page is resolving right now: their rows leaving is no surprise. */
  const closing = new Set();

  const rowsBody = () => table.querySelector("tbody#queue-rows");
  const alertRow = (id) => table.querySelector(`tr.alert-row[data-alert-id="${id}"]`);
  const formRowFor = (id) => table.querySelector(`tr.inline-form-row[data-form-for="${id}"]`);

  function takeServerNow(body) {
    const serverNow = Number(body.dataset.serverNow);
    if (Number.isFinite(serverNow)) offsetMs = serverNow - Date.now();
  }

  /** Milliseconds to answer so far (raised) or the fixed answer time (acknowledged). */
  function clockMs(clock, now) {
    if (clock.dataset.answeredMs !== undefined) return Number(clock.dataset.answeredMs);
    return now - Number(clock.dataset.raisedMs);
  }

  function tick() {
    const now = Date.now() + offsetMs;
    for (const clock of table.querySelectorAll("tr.alert-row span.clock")) {
      if (clock.dataset.answeredMs !== undefined) continue;
      const ms = clockMs(clock, now);
      if (!Number.isFinite(ms)) continue;
      const text = TEC.duration(ms);
      if (clock.textContent !== text) clock.textContent = text;
      clock.classList.toggle("over60", ms > TARGET_MS && ms <= LIMIT_MS);
      clock.classList.toggle("over180", ms > LIMIT_MS);
    }
    // A resolve form asks for the late-answer reason as soon as the alert is past 180 s.
    for (const formRow of table.querySelectorAll('tr.inline-form-row[data-form-kind="resolve"]')) {
      showExceptionIfLate(formRow, now);
    }
  }

  function showExceptionIfLate(formRow, now) {
    const row = alertRow(formRow.dataset.formFor);
    const clock = row && row.querySelector("span.clock");
    const box = formRow.querySelector(".exception");
    if (clock && box && box.hidden && clockMs(clock, now) > LIMIT_MS) box.hidden = false;
  }

  // ---- Sound: WebAudio, created on the operator's click (browsers block it before one).
  let audio = null;
  let soundOn = false;

  function showSound() {
    const running = soundOn && audio && audio.state === "running";
    soundButton.textContent = running ? "Sound on" : "Enable sound";
    soundButton.setAttribute("aria-pressed", running ? "true" : "false");
    soundState.textContent = running
      ? "Sound is on: a new life-safety alarm beeps. Press Sound on to turn it off."
      : soundOn
        ? "The browser has paused sound: press Enable sound again."
        : "Sound is off until you press Enable sound (browsers play no sound before a click on the page).";
  }

  /** `count` short high beeps, generated (no audio file). */
  function beep(count) {
    if (!soundOn || !audio || audio.state !== "running") return;
    const start = audio.currentTime + 0.05;
    for (let i = 0; i < count; i += 1) {
      const at = start + i * 0.3;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.type = "square";
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
      gain.gain.setValueAtTime(0.25, at + 0.17);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.2);
      tone.connect(gain).connect(audio.destination);
      tone.start(at);
      tone.stop(at + 0.22);
    }
  }

  soundButton.addEventListener("click", async () => {
    if (soundOn && audio && audio.state === "running") {
      soundOn = false;
      showSound();
      return;
    }
    try {
      if (!audio) {
        const Context = window.AudioContext || window.webkitAudioContext;
        if (!Context) {
          TEC.say("This browser cannot play sound: watch the queue for flashing rows.", true);
          return;
        }
        audio = new Context();
        audio.addEventListener("statechange", showSound);
      }
      await audio.resume();
      soundOn = true;
      beep(1);
    } catch (error) {
      TEC.say(`Sound could not be turned on: ${error.message}`, true);
    }
    showSound();
  });

  /** Marks new life-safety alarms in `body` (fresh rows); with `cue`, says so and beeps. */
  function markNewAlarms(body, cue) {
    const fresh = [];
    for (const row of body.querySelectorAll("tr.alert-row")) {
      const id = row.dataset.alertId;
      if (!seen.has(id)) {
        seen.add(id);
        if (cue && row.dataset.priority === "life_safety" && row.dataset.state === "raised") {
          newAlarms.add(id);
          fresh.push(row);
        }
      }
      if (newAlarms.has(id)) {
        if (row.dataset.state === "raised") row.classList.add("new-alarm");
        else newAlarms.delete(id);
      }
    }
    if (fresh.length > 0) {
      const names = fresh.map((row) => row.querySelector("a.open-alert").parentElement.textContent.trim());
      TEC.say(`New life-safety alarm: ${names.join("; ")}`);
      beep(3);
    }
  }

  // ---- Refreshing the rows: at most one fetch in flight and one more queued.
  let inFlight = false;
  let again = false;
  let refreshFailed = false;

  function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    fetchRows().finally(() => {
      inFlight = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  }

  function refreshError(message) {
    refreshFailed = true;
    TEC.say(message, true);
  }

  async function fetchRows() {
    let response;
    try {
      response = await fetch("/queue/rows", {
        credentials: "same-origin",
        redirect: "manual",
        headers: { Accept: "text/html" },
      });
    } catch (_) {
      refreshError("Cannot reach the gateway: the queue below may be out of date. Retrying.");
      return;
    }
    if (response.type === "opaqueredirect" || response.status === 401) {
      refreshError("Your session has ended: reload the page to log in again.");
      return;
    }
    if (!response.ok) {
      refreshError(`The queue could not be refreshed (${response.status}): it may be out of date. Retrying.`);
      return;
    }
    const parsed = new DOMParser().parseFromString(`<table>${await response.text()}</table>`, "text/html");
    const fresh = parsed.querySelector("tbody#queue-rows");
    if (!fresh) {
      refreshError("The queue could not be refreshed: unexpected answer. Retrying.");
      return;
    }
    if (refreshFailed) {
      refreshFailed = false;
      TEC.say("The queue is up to date again.");
    }
    swap(document.adoptNode(fresh));
  }

  /** What has focus in the rows, to find it again in the new ones. */
  function focusInRows(old) {
    const active = document.activeElement;
    if (!active || !old.contains(active)) return null;
    const rows = [...old.querySelectorAll("tr.alert-row")];
    const formRow = active.closest("tr.inline-form-row");
    if (formRow) {
      // Used only if the form goes (its alert left the queue): the row now in its place.
      const id = formRow.dataset.formFor;
      return { id, index: rows.indexOf(alertRow(id)), selector: `button.${formRow.dataset.formKind}` };
    }
    const row = active.closest("tr.alert-row");
    if (!row) return null;
    const selector = ["button.ack", "button.note", "button.resolve", "a.open-alert", "summary"].find((s) =>
      active.matches(s),
    );
    return { id: row.dataset.alertId, index: rows.indexOf(row), selector: selector || "a.open-alert" };
  }

  function refocus(where) {
    if (!where) return;
    const row = alertRow(where.id);
    if (row) {
      const target = row.querySelector(where.selector) || row.querySelector("button") || row.querySelector("a.open-alert");
      if (target) target.focus();
      return;
    }
    // The alert left the queue: the row now in its place, or the page.
    const rows = table.querySelectorAll("tr.alert-row");
    const next = rows[Math.min(where.index, rows.length - 1)];
    const target = next && next.querySelector("a.open-alert");
    if (target) target.focus();
    else document.getElementById("main").focus();
  }

  function swap(fresh) {
    const old = rowsBody();
    const lost = !document.activeElement || document.activeElement === document.body;
    const where = focusInRows(old) || (lost ? focusHint : null);
    focusHint = null;
    const openDetails = [...old.querySelectorAll("tr.alert-row details[open]")].map(
      (details) => details.closest("tr.alert-row").dataset.alertId,
    );
    const forms = [...old.querySelectorAll("tr.inline-form-row")];
    const active = document.activeElement;
    const typing =
      active && forms.some((form) => form.contains(active))
        ? { element: active, start: active.selectionStart, end: active.selectionEnd }
        : null;

    takeServerNow(fresh);
    markNewAlarms(fresh, true);
    for (const id of openDetails) {
      const row = fresh.querySelector(`tr.alert-row[data-alert-id="${id}"]`);
      const details = row && row.querySelector("details");
      if (details) details.open = true;
    }
    old.replaceWith(fresh);

    // An open form stays, with what was typed, while its alert is still open.
    for (const formRow of forms) {
      const row = alertRow(formRow.dataset.formFor);
      if (row) {
        row.classList.add("has-form");
        row.after(formRow);
      } else if (!closing.has(formRow.dataset.formFor)) {
        TEC.say(`Alert A${formRow.dataset.formFor} is no longer open (someone else closed it): its form was closed.`, true);
      }
    }
    if (typing && typing.element.isConnected) {
      typing.element.focus();
      if (typeof typing.start === "number" && typing.element.setSelectionRange) {
        typing.element.setSelectionRange(typing.start, typing.end);
      }
    } else {
      refocus(where);
    }
    tick();
  }

  // ---- The live stream (the cookie authenticates it; the browser reconnects by itself with
  // Last-Event-ID) and a slow poll in case it is down.
  function showStream(text, live) {
    streamState.textContent = text;
    streamState.classList.toggle("live", live);
  }

  function connect() {
    const source = new EventSource("/api/v1/alerts/stream");
    source.addEventListener("open", () => {
      showStream("live", true);
      // Changes made before the stream opened are read with the rows.
      refresh();
    });
    source.addEventListener("alert", refresh);
    source.addEventListener("reset", refresh);
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused outright (a session ended, a gateway restarting): try again later.
        source.close();
        showStream("disconnected: retrying", false);
        setTimeout(connect, RECONNECT_MS);
      } else {
        showStream("reconnecting…", false);
      }
    });
  }

  // ---- Actions (operators): acknowledge, note and resolve in place.
  async function acknowledge(row, button) {
    const id = row.dataset.alertId;
    const rows = [...rowsBody().querySelectorAll("tr.alert-row")];
    focusHint = { id, index: rows.indexOf(row), selector: "button.ack" };
    button.disabled = true;
    try {
      await TEC.api("POST", `/api/v1/alerts/${id}/acknowledge`);
      TEC.say(`Alert A${id} acknowledged: the resident's device hears that help is on the way.`);
    } catch (error) {
      TEC.say(`Alert A${id} was not acknowledged: ${error.message}`, true);
      button.disabled = false;
    }
    refresh();
  }

  function closeForm(formRow) {
    if (!formRow) return;
    const id = formRow.dataset.formFor;
    const kind = formRow.dataset.formKind;
    formRow.remove();
    const row = alertRow(id);
    if (!row) return;
    row.classList.remove("has-form");
    const opener = row.querySelector(`button.${kind}`);
    if (opener) opener.focus();
  }

  function openForm(row, kind) {
    const id = row.dataset.alertId;
    const existing = formRowFor(id);
    if (existing && existing.dataset.formKind === kind) {
      existing.querySelector("select, textarea").focus();
      return;
    }
    if (existing) existing.remove();
    const template = document.getElementById(`${kind}-form-template`);
    if (!template) return;
    const formRow = document.createElement("tr");
    formRow.className = "inline-form-row";
    formRow.dataset.formFor = id;
    formRow.dataset.formKind = kind;
    const cell = document.createElement("td");
    cell.colSpan = row.cells.length;
    cell.appendChild(template.content.cloneNode(true));
    const form = cell.querySelector("form");
    form.setAttribute("aria-label", kind === "note" ? `Note on alert A${id}` : `Resolve alert A${id}`);
    formRow.appendChild(cell);
    row.classList.add("has-form");
    row.after(formRow);
    if (kind === "resolve") showExceptionIfLate(formRow, Date.now() + offsetMs);
    form.querySelector("select, textarea").focus();
  }

  async function submitNote(formRow, form) {
    const id = formRow.dataset.formFor;
    const text = form.elements.text.value;
    if (!text.trim()) {
      TEC.say("Write the note first.", true);
      form.elements.text.focus();
      return;
    }
    await send(form, async () => {
      await TEC.api("POST", `/api/v1/alerts/${id}/notes`, { text });
      TEC.say(`Note added to alert A${id}.`);
      closeForm(formRow);
    });
  }

  async function submitResolve(formRow, form) {
    const id = formRow.dataset.formFor;
    const select = form.elements.outcome;
    if (!select.value) {
      TEC.say("Choose an outcome first.", true);
      select.focus();
      return;
    }
    const note = form.elements.note.value;
    if (select.selectedOptions[0].dataset.noteRequired !== undefined && !note.trim()) {
      TEC.say("This outcome needs a note: say what was done or who was called.", true);
      form.elements.note.focus();
      return;
    }
    const body = { outcome: select.value };
    if (note.trim()) body.note = note;
    // Sent only when filled (the API refuses fields it does not know).
    const reason = form.elements.exception_reason.value;
    if (reason.trim()) body.exception_reason = reason;
    closing.add(id);
    await send(form, async () => {
      await TEC.api("POST", `/api/v1/alerts/${id}/resolve`, body);
      TEC.say(`Alert A${id} resolved.`);
      closeForm(formRow);
    });
    closing.delete(id);
  }

  /** Runs a form's API call with its buttons disabled; an error stays in #status. */
  async function send(form, call) {
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((button) => {
      button.disabled = true;
    });
    try {
      await call();
    } catch (error) {
      TEC.say(`Not saved: ${error.message}`, true);
    } finally {
      buttons.forEach((button) => {
        button.disabled = false;
      });
    }
    refresh();
  }

  table.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !table.contains(button)) return;
    const row = button.closest("tr.alert-row");
    if (row && button.classList.contains("ack")) acknowledge(row, button);
    else if (row && button.classList.contains("note")) openForm(row, "note");
    else if (row && button.classList.contains("resolve")) openForm(row, "resolve");
    else if (button.classList.contains("cancel")) closeForm(button.closest("tr.inline-form-row"));
  });

  table.addEventListener("submit", (event) => {
    const formRow = event.target.closest("tr.inline-form-row");
    if (!formRow) return;
    event.preventDefault();
    if (formRow.dataset.formKind === "note") submitNote(formRow, event.target);
    else submitResolve(formRow, event.target);
  });

  table.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const formRow = event.target.closest("tr.inline-form-row");
    if (!formRow) return;
    event.preventDefault();
    closeForm(formRow);
  });

  // ---- Start: the rows the page came with are not new; then live.
  const first = rowsBody();
  takeServerNow(first);
  markNewAlarms(first, false);
  showSound();
  tick();
  setInterval(tick, 1000);
  setInterval(refresh, POLL_MS);
  connect();
})();

// The call-handling view (/alerts/{id}): the answer-time clock, and the operator's actions
// through /api/v1 (acknowledge, record a responder call, reveal the access information,
// resolve). After a change the page reloads, so what it shows is what the gateway committed.
"use strict";

(() => {
  const form = document.getElementById("resolve-form");
  const clock = document.querySelector("span.clock[data-raised-ms]");
  const reasonBox = document.getElementById("exception-reason");
  // The server's clock may differ from the browser's (a test clock, a skewed PC): run the
  // clock on the server's time, advanced by the browser's elapsed time.
  const serverOffset = clock ? Number(clock.dataset.nowMs) - Date.now() : 0;
  const serverNow = () => Date.now() + serverOffset;

  function tick() {
    if (!clock || clock.dataset.running !== "true") return;
    const waited = serverNow() - Number(clock.dataset.raisedMs);
    clock.textContent = TEC.duration(waited);
    clock.classList.toggle("over60", waited > 60000 && waited <= 180000);
    clock.classList.toggle("over180", waited > 180000);
    if (form && reasonBox && form.dataset.lateAfterMs && serverNow() > Number(form.dataset.lateAfterMs)) {
      reasonBox.required = true;
    }
  }

  /** Runs an API call from a button, then reloads; errors go to #status. */
  async function act(button, what, call) {
    if (button) button.disabled = true;
    TEC.say(`${what}…`, false);
    try {
      await call();
      TEC.say(`${what}: done.`, false);
      location.reload();
    } catch (error) {
      TEC.say(`${what} failed: ${error.message}`, true);
      if (button) button.disabled = false;
    }
  }

  const alertId = form ? form.dataset.alert : null;

  const ack = document.getElementById("acknowledge");
  if (ack) {
    ack.addEventListener("click", () =>
      act(ack, "Acknowledge", () => TEC.api("POST", `/api/v1/alerts/${ack.dataset.alert}/acknowledge`)),
    );
  }

  for (const button of document.querySelectorAll("#responders button.record-call")) {
    button.addEventListener("click", () => {
      const item = button.closest("li");
      const select = item ? item.querySelector("select.call-outcome") : null;
      if (!select || !alertId) return;
      act(button, "Record call", () =>
        TEC.api("POST", `/api/v1/alerts/${alertId}/responder-calls`, {
          responder: Number(button.dataset.index),
          outcome: select.value,
        }),
      );
    });
  }

  const reveal = document.getElementById("reveal-access");
  const accessInfo = document.getElementById("access-info");
  if (reveal && accessInfo) {
    reveal.addEventListener("click", async () => {
      reveal.disabled = true;
      try {
        const answer = await TEC.api("POST", `/api/v1/residents/${encodeURIComponent(reveal.dataset.resident)}/access-info`, {
          alert: Number(reveal.dataset.alert),
        });
        accessInfo.textContent = answer.access_notes || "No access information on record.";
        accessInfo.hidden = false;
        TEC.say("Access information shown (this is recorded).", false);
      } catch (error) {
        TEC.say(`Access information not shown: ${error.message}`, true);
        reveal.disabled = false;
      }
    });
  }

  if (form) {
    const outcome = document.getElementById("outcome");
    const note = document.getElementById("resolve-note");
    const requiresNote = () => {
      const chosen = outcome.options[outcome.selectedIndex];
      note.required = !!(chosen && chosen.dataset.requiresNote === "true");
    };
    outcome.addEventListener("change", requiresNote);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      requiresNote();
      if (!form.reportValidity()) return;
      const text = (box) => (box && box.value.trim() ? box.value : null);
      act(document.getElementById("resolve"), "Resolve", () =>
        TEC.api("POST", `/api/v1/alerts/${alertId}/resolve`, {
          outcome: outcome.value,
          note: text(note),
          exception_reason: text(reasonBox),
          follow_up: text(document.getElementById("follow-up")),
        }),
      );
    });
  }

  tick();
  setInterval(tick, 1000);
})();

// The worklist's "Done" buttons: mark a promised follow-up done through the API
// (POST /api/v1/alerts/{id}/follow-up-done {"note"?}), then take its row off the list.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.follow-up-done");
  if (!button) return;
  const alertId = button.dataset.alertId;
  const row = button.closest("tr");
  const noteField = row ? row.querySelector("input.follow-up-note") : null;
  const note = noteField ? noteField.value.trim() : "";
  button.disabled = true;
  try {
    await TEC.api("POST", `/api/v1/alerts/${encodeURIComponent(alertId)}/follow-up-done`, note ? { note } : {});
    if (row) row.remove();
    TEC.say(`Follow-up for alert ${alertId} marked done.`);
  } catch (error) {
    button.disabled = false;
    TEC.say(`Could not mark the follow-up for alert ${alertId} done: ${error.message}`, true);
  }
});

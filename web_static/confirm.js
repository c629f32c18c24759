// A confirmation in the page's own colours (a native confirm() would flash white at night).

import { $ } from "./dom.js";

/** Ask ``text``; resolves true when the user chose ``action`` (the button that does it). */
export function confirmAction(text, action = "Delete") {
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

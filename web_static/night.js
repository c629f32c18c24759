// Night mode: red on black. The inline script in index.html sets the class before the first
// paint; this keeps the button and the remembered choice in step with it.

import { $ } from "./dom.js";

export function setupNightMode() {
  const toggle = $("night-toggle");
  const show = () => toggle.setAttribute("aria-pressed", String(document.documentElement.classList.contains("night")));
  toggle.addEventListener("click", () => {
    const night = document.documentElement.classList.toggle("night");
    localStorage.setItem("wanda.night", night ? "1" : "0");
    show();
  });
  show();
}

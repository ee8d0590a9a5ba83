// Small DOM helpers. Text goes in as text (textContent), never as HTML; the one exception is
// the search snippets, which history.js inserts itself.
import { t, currentLanguage } from "./i18n.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** el("li", {class: "x", dataset: {id: 1}, onclick: fn}, "text", child) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function show(node, visible = true) {
  node.hidden = !visible;
}

export function formatMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

export function formatSeconds(s) {
  if (s === null || s === undefined) return "–";
  return `${Number(s).toFixed(1)} s`;
}

export function formatMb(mb) {
  if (mb === null || mb === undefined) return "–";
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GB` : `${Math.round(mb)} MB`;
}

export function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return date.toLocaleString(currentLanguage(), { dateStyle: "medium", timeStyle: "short" });
}

/** A modal confirmation (native <dialog>: focus stays inside, Escape cancels). */
export function confirmDialog(message, okLabel = t("app.delete")) {
  const dialog = $("#confirm-dialog");
  $("#confirm-text", dialog).textContent = message;
  $("#confirm-ok", dialog).textContent = okLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    dialog.returnValue = "cancel";
    dialog.addEventListener(
      "close",
      () => {
        if (opener instanceof HTMLElement) opener.focus();
        resolve(dialog.returnValue === "ok");
      },
      { once: true },
    );
    dialog.showModal();
    $("#confirm-cancel", dialog).focus();
  });
}

/** Keep Tab inside open modal dialogs (the page behind is inert, this also skips browser UI). */
export function trapDialogFocus(dialog) {
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const focusable = $$(
      "button:not([disabled]), input:not([disabled]), select, textarea, a[href]",
      dialog,
    ).filter((node) => !node.hidden && node.offsetParent !== null);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  });
}

/** Sets an element's width as a percentage through CSSOM (allowed by style-src 'self'). */
export function setWidth(node, fraction) {
  node.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
}

/** Saves a Blob as a download with the given file name. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, class: "visually-hidden" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Interface strings in English and Traditional Chinese (Taiwan). Only the language choice is
// remembered (localStorage "avatar.uiLanguage"); nothing else is stored in the browser.
import { en } from "./strings-en.js";
import { zhTW } from "./strings-zh-tw.js";

const STORAGE_KEY = "avatar.uiLanguage";
const DICTIONARIES = { en, "zh-TW": zhTW };
const listeners = [];

function initialLanguage() {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved && saved in DICTIONARIES) return saved;
  } catch {
    // storage disabled: fall back to the browser's languages
  }
  const preferred = navigator.languages || [navigator.language || "en"];
  return preferred.some((l) => /^zh/i.test(l)) ? "zh-TW" : "en";
}

let language = initialLanguage();

export function currentLanguage() {
  return language;
}

/** The string for `key` with {name} placeholders filled; plural forms by {n}. */
export function t(key, vars = {}) {
  let value = DICTIONARIES[language][key] ?? en[key];
  if (value === undefined) return key.split(".").pop();
  if (typeof value === "object") {
    const form = new Intl.PluralRules(language).select(Number(vars.n ?? 0));
    value = value[form] ?? value.other;
  }
  return value.replace(/\{(\w+)\}/g, (match, name) => (name in vars ? String(vars[name]) : match));
}

/** Fill every [data-i18n], [data-i18n-placeholder] and [data-i18n-aria-label] under root. */
export function applyTranslations(root = document) {
  document.documentElement.lang = language;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  for (const node of root.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
}

/** "English", "中文" … for a language code, in the interface language; the code if unknown. */
export function languageName(code) {
  if (!code) return "";
  const key = `lang.${code}`;
  const known = DICTIONARIES[language][key] ?? en[key];
  if (known) return known;
  try {
    return new Intl.DisplayNames([language], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

/** A server error event in the interface language where its code is known, else as sent. */
export function serverMessage(event) {
  const key = `server.${event.code}`;
  const known = DICTIONARIES[language][key] ?? en[key];
  return known ?? `${event.message} (${event.code})`;
}

export function setLanguage(next) {
  if (!(next in DICTIONARIES) || next === language) return;
  language = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // not remembered, still switched
  }
  applyTranslations();
  listeners.forEach((listener) => listener(language));
}

export function onLanguageChange(listener) {
  listeners.push(listener);
}

// Entry point: language, tabs, login state, and the four tabs' controllers.
import { $, $$, el, trapDialogFocus } from "./dom.js";
import { api, UNAUTHORIZED } from "./api.js";
import { applyTranslations, currentLanguage, onLanguageChange, setLanguage, t } from "./i18n.js";
import { Banner } from "./banner.js";
import { Talk } from "./talk.js";
import { Voices } from "./voices.js";
import { History } from "./history.js";
import { System } from "./system.js";
import { onePlayerAtATime } from "./media.js";

const TABS = ["talk", "voices", "history", "system"];
const AUTH_PROBE_EVERY_MS = 2_000; // a refused reconnect asks "still signed in?" this often

// Any CSP violation is a bug in these files: make it loud, and visible to the UI tests.
document.addEventListener("securitypolicyviolation", (event) => {
  const root = document.documentElement;
  root.dataset.cspViolations = String(Number(root.dataset.cspViolations || 0) + 1);
  console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
});

class App {
  constructor() {
    this.banner = new Banner();
    this.loaded = new Set();
    this.lastProbe = 0;
    this.talk = new Talk({ banner: this.banner, onRefused: () => this.probeAuth() });
    this.voices = new Voices({
      banner: this.banner,
      onProfiles: (profiles) => this.talk.setVoices(profiles),
    });
    this.history = new History({ banner: this.banner });
    this.system = new System({ banner: this.banner });
    this.bindTabs();
    this.bindLanguage();
    $$("dialog").forEach(trapDialogFocus);
    onePlayerAtATime();
    window.addEventListener(UNAUTHORIZED, () => this.showLogin());
  }

  bindLanguage() {
    const select = $("#ui-lang");
    select.value = currentLanguage();
    select.addEventListener("change", () => setLanguage(select.value));
    onLanguageChange(() => {
      select.value = currentLanguage();
      this.retitle();
      // Re-render what was drawn from data with the new words.
      this.voices.render();
      if (this.loaded.has("history")) this.history.refresh();
      if (this.loaded.has("system")) this.system.load();
    });
  }

  bindTabs() {
    const tabs = $$("[role=tab]");
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => this.select(tab.dataset.tab, true));
      tab.addEventListener("keydown", (event) => {
        const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
        if (!(event.key in moves)) return;
        event.preventDefault();
        const next = tabs[(moves[event.key] + tabs.length) % tabs.length];
        next.focus();
        this.select(next.dataset.tab, true);
      });
    });
    window.addEventListener("hashchange", () => this.select(this.tabFromHash()));
  }

  tabFromHash() {
    const name = location.hash.slice(1);
    return TABS.includes(name) ? name : "talk";
  }

  select(name, push = false) {
    if (document.body.dataset.auth !== "in") return;
    for (const tab of $$("[role=tab]")) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    for (const other of TABS) $(`#panel-${other}`).hidden = other !== name;
    if (push && location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    this.tab = name;
    this.retitle();
    this.firstShow(name);
  }

  /** The window title in the interface language: the tab shown, or the sign-in page. */
  retitle() {
    const signedIn = document.body.dataset.auth === "in";
    const page = signedIn ? t(`tab.${this.tab || "talk"}`) : t("login.title");
    document.title = `${page} · AVATAR`;
  }

  firstShow(name) {
    if (this.loaded.has(name)) return;
    this.loaded.add(name);
    if (name === "history") this.history.load();
    if (name === "system") this.system.load();
    if (name === "voices") this.voices.render();
  }

  async start() {
    applyTranslations();
    if (new URLSearchParams(location.search).get("login") === "failed") {
      $("#login-failed").hidden = false;
    }
    const ok = await this.voices.load(); // also the sign-in check: a 401 shows the login panel
    if (document.body.dataset.auth === "out") return;
    if (!ok) {
      $("#loading").textContent = t("app.unreachable");
      setTimeout(() => this.start(), 5000);
      return;
    }
    this.banner.clear();
    this.showApp();
  }

  showApp() {
    document.body.dataset.auth = "in";
    $("#loading").hidden = true;
    $("#login-panel").hidden = true;
    this.loaded.add("voices-data");
    this.select(this.tabFromHash());
    this.talk.start();
    this.loadEngines();
  }

  /** What the engines can do shapes the Talk pickers (hq speech, voice cloning). */
  async loadEngines() {
    try {
      this.talk.setEngines(await api.modelsStatus());
    } catch {
      // the pickers stay as they are; the System tab shows the error
    }
  }

  showLogin() {
    const wasIn = document.body.dataset.auth === "in";
    document.body.dataset.auth = "out";
    $("#loading").hidden = true;
    // Signed in a moment ago and now refused: the server restarted with a new token.
    $("#login-restarted").hidden = !wasIn;
    const lost = this.talk.undelivered();
    $("#login-undelivered").hidden = !lost.length;
    $("#login-undelivered-list").replaceChildren(...lost.map((text) => el("li", { text })));
    this.talk.stop();
    for (const name of TABS) $(`#panel-${name}`).hidden = true;
    this.banner.clear();
    $("#login-panel").hidden = false;
    this.retitle();
    $("#login-token").focus();
  }

  /** The WebSocket was refused: is the server up, and are we still signed in? */
  async probeAuth() {
    const now = Date.now();
    if (now - this.lastProbe < AUTH_PROBE_EVERY_MS) return;
    this.lastProbe = now;
    try {
      const health = await fetch("/health", { cache: "no-store" });
      if (health.ok) await api.voiceProfiles(1, 1); // a 401 shows the login panel
    } catch {
      // down or unreachable: the connection view already says so
    }
  }
}

const app = new App();
app.start();

// The Talk tab's pickers (voice, speech quality, spoken language): what the session uses, and
// what this server can actually do. A voice profile that cannot change the voice here, or hq
// speech that is not set up, is shown disabled with the reason beside the picker.
import { $, el } from "./dom.js";
import { currentLanguage, t } from "./i18n.js";

export class Pickers {
  constructor() {
    this.profiles = [];
    this.status = null;
    this.engines = { hq: true, canClone: true, voice: "" };
  }

  /** The session settings the pickers show, for a `config` message. */
  values() {
    return {
      language: $("#lang-select").value,
      tts_mode: $("#tts-select").value,
      voice_profile_id: $("#voice-select").value,
      // Chinese is written the way the interface is read: Traditional in the zh-TW interface.
      chinese_script: currentLanguage() === "zh-TW" ? "traditional" : "simplified",
    };
  }

  /** Show what the server says the session uses. */
  apply(config) {
    const set = (id, value) => {
      const select = $(id);
      const option = [...select.options].find((o) => o.value === value);
      if (option && !option.disabled) select.value = value;
    };
    set("#lang-select", config.language || "auto");
    set("#tts-select", config.tts_mode || "auto");
    set("#voice-select", config.voice_profile_id || "");
  }

  /** The voice-profile options; returns true when the chosen one had to go. */
  setVoices(profiles = this.profiles) {
    this.profiles = profiles;
    const select = $("#voice-select");
    const current = select.value;
    const usable = (p) => this.engines.canClone && p.engine_status === "cloning_ready";
    const options = profiles.map((p) =>
      el("option", {
        value: p.id,
        text: usable(p) ? p.name : t("talk.voiceCannotClone", { name: p.name }),
        disabled: !usable(p),
      }),
    );
    select.options[0].textContent = this.engines.voice
      ? t("talk.defaultVoiceNamed", { voice: this.engines.voice })
      : t("talk.defaultVoice");
    select.replaceChildren(select.options[0], ...options);
    select.value = profiles.some((p) => p.id === current && usable(p)) ? current : "";
    const hint = $("#voice-hint");
    hint.hidden = !profiles.length || this.engines.canClone;
    hint.textContent = t("talk.voiceHint", { voice: this.engines.voice || "–" });
    return select.value !== current;
  }

  /** What the engines can do (from /api/system/models/status); returns as setVoices. */
  setEngines(status = this.status) {
    if (!status) return false;
    this.status = status;
    const hq = status.tts_modes?.hq || {};
    const fast = status.slots?.["tts.fast"] || {};
    this.engines = {
      hq: Boolean(hq.available),
      canClone: Boolean(hq.configured && hq.available),
      voice: fast.model || fast.engine || "",
    };
    const option = $('#tts-select option[value="hq"]');
    option.disabled = !this.engines.hq;
    option.textContent = this.engines.hq ? t("tts.hq") : t("tts.hqUnavailable");
    const hint = $("#tts-hint");
    hint.hidden = this.engines.hq;
    hint.textContent = hq.configured ? t("tts.hqFailing") : t("tts.hqNotConfigured");
    const wasHq = !this.engines.hq && $("#tts-select").value === "hq";
    if (wasHq) $("#tts-select").value = "auto";
    return this.setVoices() || wasHq;
  }
}

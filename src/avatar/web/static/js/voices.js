// The Voices tab: record or upload a reference, list the profiles (see voice-card.js), edit
// them in a dialog, delete them after a confirmation.
import { $, $$, clear, confirmDialog } from "./dom.js";
import { api, ApiError } from "./api.js";
import { t } from "./i18n.js";
import { Recorder } from "./recorder.js";
import { profileCard } from "./voice-card.js";

export class Voices {
  constructor({ banner, onProfiles }) {
    this.banner = banner;
    this.onProfiles = onProfiles;
    this.profiles = [];
    this.recorded = null;
    this.highlight = null;
    this.recorder = new Recorder({
      onTick: (s) => ($("#record-time").textContent = t("voices.recording", { s })),
      onDone: (blob) => this.useRecording(blob),
      onError: (reason) => this.formError(t(`mic.${reason}`)),
    });
    this.bind();
  }

  bind() {
    $("#voice-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.create();
    });
    $("#voices-refresh").addEventListener("click", () => this.load());
    $("#record-start").addEventListener("click", async () => {
      this.formError("");
      if (await this.recorder.start()) {
        $("#record-start").disabled = true;
        $("#record-stop").disabled = false;
        $("#record-stop").focus();
      }
    });
    $("#record-stop").addEventListener("click", () => this.recorder.stop());
    $("#voice-file").addEventListener("change", () => {
      const file = $("#voice-file").files[0];
      if (!file) return;
      this.recorded = null;
      this.preview(file, t("voices.fileChosen", { name: file.name }));
    });
    $("#edit-form").addEventListener("submit", (e) => this.saveEdit(e));
    $("#voice-form").addEventListener("input", (e) => this.fieldChanged(e));
    $("#voice-form").addEventListener("change", (e) => this.fieldChanged(e));
  }

  useRecording(blob) {
    $("#record-start").disabled = false;
    $("#record-stop").disabled = true;
    $("#record-time").textContent = "";
    this.recorded = blob;
    $("#voice-file").value = "";
    this.preview(blob, t("voices.recorded", { s: this.recorder.seconds }));
    if (this.errorField === "#voice-file") this.formError("");
  }

  preview(blob, label) {
    const audio = $("#voice-preview");
    if (audio.src.startsWith("blob:")) URL.revokeObjectURL(audio.src);
    audio.src = URL.createObjectURL(blob);
    audio.dataset.type = blob.type;
    audio.hidden = false;
    $("#voice-source").textContent = label;
  }

  /** Show `message` tied to `field` (its input is marked invalid and described by it), or
   * clear it. The error goes as soon as that field is fixed. */
  formError(message, field = null) {
    const node = $("#voice-error");
    node.textContent = message;
    node.hidden = !message;
    for (const input of $$("#voice-form [aria-invalid]")) {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
    this.errorField = message ? field : null;
    this.errorHome ??= { parent: node.parentNode, next: node.nextSibling };
    if (message && field) {
      const input = $(field);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "voice-error");
      input.after(node); // shown under the field it is about
      input.focus();
    } else {
      this.errorHome.parent.insertBefore(node, this.errorHome.next);
    }
  }

  /** An input changed: an error about it (or about the whole form) is out of date. */
  fieldChanged(event) {
    if ($("#voice-error").hidden) return;
    const field = this.errorField;
    const audioFixed = field === "#voice-file" && this.recorded;
    if (!field || event.target.matches(field) || audioFixed) this.formError("");
  }

  async create() {
    const name = $("#voice-name").value.trim();
    const file = $("#voice-file").files[0];
    const audio = this.recorded || file;
    if (!name) return this.formError(t("voices.needName"), "#voice-name");
    if (!audio) return this.formError(t("voices.needAudio"), "#voice-file");
    const form = new FormData();
    form.set("name", name);
    form.set("description", $("#voice-description").value.trim());
    form.set("reference_text", $("#voice-reference").value.trim());
    const ext = (audio.type || "").includes("webm") ? "webm" : "wav";
    form.set("audio_file", audio, file ? file.name : `recording.${ext}`);
    this.formError("");
    $("#voice-busy").hidden = false;
    $("#voice-submit").disabled = true;
    try {
      const profile = await api.createVoiceProfile(form);
      $("#voice-form").reset();
      this.recorded = null;
      $("#voice-preview").hidden = true;
      $("#voice-source").textContent = "";
      this.highlight = profile.id;
      await this.load();
    } catch (error) {
      this.formError(error instanceof ApiError ? error.describe() : String(error));
    } finally {
      $("#voice-busy").hidden = true;
      $("#voice-submit").disabled = false;
    }
  }

  async load() {
    try {
      const page = await api.voiceProfiles();
      this.profiles = page.items;
    } catch (error) {
      if (error.status !== 401) this.banner.show(error.describe(), "error");
      return false;
    }
    this.onProfiles(this.profiles);
    this.render();
    return true;
  }

  render() {
    const list = clear($("#voice-list"));
    $("#voice-empty").hidden = this.profiles.length > 0;
    for (const profile of this.profiles)
      list.append(
        profileCard(profile, { onEdit: (p) => this.edit(p), onDelete: (p) => this.remove(p) }),
      );
    if (this.highlight) {
      const card = list.querySelector(`[data-id="${CSS.escape(this.highlight)}"]`);
      card?.classList.add("fresh");
      card?.scrollIntoView({ block: "nearest" });
      this.highlight = null;
    }
  }

  edit(profile) {
    const dialog = $("#edit-dialog");
    this.editing = profile;
    $("#edit-name").value = profile.name;
    $("#edit-description").value = profile.description;
    $("#edit-reference").value = profile.reference_text;
    $("#edit-error").hidden = true;
    this.editOpener = document.activeElement;
    dialog.addEventListener("close", () => this.editOpener?.focus(), { once: true });
    dialog.showModal();
    $("#edit-name").focus();
  }

  async saveEdit(event) {
    if (event.submitter?.value !== "save") return;
    event.preventDefault();
    const p = this.editing;
    const fields = {};
    for (const key of ["name", "description", "reference_text"]) {
      const value = $(`#edit-${key === "reference_text" ? "reference" : key}`).value.trim();
      if (value !== p[key]) fields[key] = value;
    }
    try {
      if (Object.keys(fields).length) await api.updateVoiceProfile(p.id, fields);
      $("#edit-dialog").close("save");
      this.highlight = p.id;
      await this.load();
    } catch (error) {
      $("#edit-error").textContent = error instanceof ApiError ? error.describe() : String(error);
      $("#edit-error").hidden = false;
    }
  }

  async remove(profile) {
    if (!(await confirmDialog(t("voices.confirmDelete", { name: profile.name })))) return;
    try {
      await api.deleteVoiceProfile(profile.id);
      await this.load();
    } catch (error) {
      this.banner.show(error.describe(), "error");
    }
  }
}

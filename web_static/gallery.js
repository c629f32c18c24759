// The gallery: single captures and session folders, paged, with the full image, download, zip and
// confirmed delete.

import { api, command } from "./api.js";
import { confirmAction } from "./confirm.js";
import { $ } from "./dom.js";
import { formatBytes } from "./format.js";
import { refreshResumable } from "./session.js";

// A night's folder holds thousands of frames: the grid shows the newest page and grows on request.
const GALLERY_PAGE = 60;
export const gallery = { folder: "", shown: GALLERY_PAGE };

export async function refreshFolders() {
  const select = $("gallery-folder");
  try {
    const { details } = await api("GET", "/api/captures/folders");
    const keep = select.value;
    select.replaceChildren(new Option("Single captures", ""));
    for (const folder of details) select.append(new Option(`${folder.name} (${folder.images})`, folder.name));
    select.value = [...select.options].some((o) => o.value === keep) ? keep : "";
  } catch { /* the next refresh will try again */ }
}

export async function refreshGallery() {
  const folder = gallery.folder;
  let data;
  try {
    // The server hands out at most 1000 details an answer. A frame saved between two pages
    // shifts the offsets by one: skip what the grid already has.
    for (let offset = 0; offset < gallery.shown; offset += 1000) {
      const query = new URLSearchParams({ offset, limit: Math.min(1000, gallery.shown - offset) });
      if (folder) query.set("folder", folder);
      const page = await api("GET", `/api/captures?${query}`);
      if (data) {
        const seen = new Set(data.items.map((item) => item.path));
        data.items.push(...page.items.filter((item) => !seen.has(item.path)));
      } else {
        data = page;
      }
      if (offset + page.items.length >= page.total) break;
    }
  } catch {
    return;
  }
  const grid = $("gallery-grid");
  grid.replaceChildren(...data.items.map(galleryItem));
  $("gallery-empty").hidden = data.items.length > 0;
  const more = $("gallery-more");
  const left = data.total - data.items.length;
  more.hidden = left <= 0;
  more.textContent = `Show more (${left} older)`;
  $("folder-zip").hidden = !folder;
  $("folder-delete").hidden = !folder;
  if (folder) $("folder-zip").href = `/api/captures/${encodeURIComponent(folder)}.zip`;
}

function galleryItem(item) {
  const entry = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.title = item.name;
  if (item.thumb_url) {
    const image = document.createElement("img");
    image.loading = "lazy";
    image.src = item.thumb_url;
    image.alt = item.name;
    button.append(image);
  } else {
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = item.name.split(".").pop().toUpperCase();
    button.append(kind);
  }
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = item.name;
  button.append(name);
  button.addEventListener("click", () => openImage(item));
  entry.append(button);
  return entry;
}

function openImage(item) {
  const dialog = $("image-dialog");
  $("image-title").textContent = item.name;
  const full = $("image-full");
  const isJpeg = /\.jpe?g$/i.test(item.name);
  full.hidden = !isJpeg;
  full.src = isJpeg ? item.url : "";
  full.alt = item.name;
  $("image-info").textContent = `${formatBytes(item.size)} · ${new Date(item.modified * 1000).toLocaleString()}`;
  $("image-download").href = item.url;
  $("image-download").setAttribute("download", item.name);
  $("image-delete").onclick = async () => {
    if (!(await confirmAction(`Delete ${item.name}? This cannot be undone.`))) return;
    dialog.close();
    await command($("gallery-message"), "DELETE", item.url);
    refreshGallery();
    refreshFolders();
  };
  dialog.showModal();
}

/** A gallery error (a refused delete) shows beside the gallery until it no longer applies: another
 * folder is chosen, the delete is tried again, or the session that kept the folder busy ends. */
export function clearGalleryMessage() {
  $("gallery-message").textContent = "";
}

export function setupGallery() {
  $("gallery-folder").addEventListener("change", (event) => {
    clearGalleryMessage();
    gallery.folder = event.target.value;
    gallery.shown = GALLERY_PAGE;
    refreshGallery();
  });
  $("gallery-more").addEventListener("click", () => {
    gallery.shown += GALLERY_PAGE;
    refreshGallery();
  });
  $("folder-delete").addEventListener("click", async () => {
    const folder = gallery.folder;
    if (!folder || !(await confirmAction(`Delete the folder ${folder} and every frame in it?`))) return;
    if (await command($("gallery-message"), "DELETE", `/api/captures/${encodeURIComponent(folder)}`)) {
      gallery.folder = "";
      await refreshFolders();
      refreshGallery();
      refreshResumable(); // a session whose folder went can no longer be resumed
    }
  });
}

// Shared helpers of the studio pages (plain ES modules, no build step).

export const $ = (selector, root = document) => root.querySelector(selector);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

// A JSON API call; errors become exceptions carrying the server's one-sentence message and status.
export async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    if (type.includes("json")) message = (await response.json()).error || message;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return type.includes("json") ? response.json() : response;
}

export function showError(node, error) {
  node.textContent = error ? String(error.message || error) : "";
}

// Class ids of a decoded single-channel image (the red channel of its RGBA pixels).
export async function idsOf(file) {
  const bitmap = await createImageBitmap(file);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const ids = new Uint8Array(bitmap.width * bitmap.height);
  for (let i = 0; i < ids.length; i++) ids[i] = rgba[4 * i];
  return { ids, width: bitmap.width, height: bitmap.height };
}

// Colour class ids with a palette {id: [r, g, b]} into an ImageData.
export function colourise(ids, width, height, colours) {
  const image = new ImageData(width, height);
  for (let i = 0; i < ids.length; i++) {
    const c = colours[ids[i]] || [0, 0, 0];
    image.data[4 * i] = c[0]; image.data[4 * i + 1] = c[1]; image.data[4 * i + 2] = c[2]; image.data[4 * i + 3] = 255;
  }
  return image;
}

export function bytesToBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export function base64ToBytes(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function download(name, blob) {
  const link = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

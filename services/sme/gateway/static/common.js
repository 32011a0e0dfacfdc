// Shared by the dashboard and the editor pages (loaded first): the API's base path, the
// tab's API key, and DOM/SVG builders that only ever write data as text, never as HTML.
"use strict";

const API = "/api/v1/035-sequential-messaging-engine";
const KEY_STORE = "sme-api-key"; // one key for every page of this tab
const SVG_NS = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(name, String(value));
  }
  if (text != null) node.textContent = String(text);
  return node;
}

class AuthError extends Error {}

// The key from a `#key=…` link (then dropped from the address bar) or the tab's storage.
function apiKey() {
  const match = location.hash.match(/key=([^&]+)/);
  if (match) {
    sessionStorage.setItem(KEY_STORE, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY_STORE);
}

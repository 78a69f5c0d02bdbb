// Progressive enhancement only: every page works without this script.
"use strict";

function setBadge(count) {
  const badge = document.getElementById("unread-badge");
  if (!badge) return;
  badge.textContent = String(count);
  badge.hidden = count <= 0;
}

function addToFeed(n) {
  const feed = document.getElementById("feed");
  if (!feed || feed.querySelector(`[data-id="${CSS.escape(n.id)}"]`)) return;
  const empty = feed.querySelector(".empty");
  if (empty) empty.remove();
  const li = document.createElement("li");
  li.className = "item unread live";
  li.dataset.id = n.id;
  const title = document.createElement("b");
  title.textContent = n.title || n.kind;
  li.append(title);
  const button = document.createElement("button");
  button.textContent = "Mark read";
  button.className = "mark-read-live";
  button.addEventListener("click", () => markRead(li));
  li.append(" ", button);
  feed.prepend(li);
}

async function markRead(li) {
  const url = document.getElementById("feed").dataset.readUrl.replace("ID", encodeURIComponent(li.dataset.id));
  const response = await fetch(url, {method: "POST", headers: {
    "X-CSRFToken": document.body.dataset.csrf, "Accept": "application/json"}});
  if (!response.ok) return;
  li.classList.replace("unread", "read");
  li.querySelectorAll("form.mark-read, button.mark-read-live").forEach((el) => el.remove());
  setBadge((await response.json()).unread);
}

// The gateway's websocket: the token goes in the first message (the form that keeps
// it out of URLs); a gateway that only reads ?token= closes at once with 1008, and
// then the query form is tried.
function connectLive(info, useQuery, delay) {
  const url = useQuery ? `${info.ws_url}?token=${encodeURIComponent(info.token)}` : info.ws_url;
  const ws = new WebSocket(url);
  let greeted = false;
  ws.addEventListener("open", () => {
    if (!useQuery) ws.send(JSON.stringify({type: "auth", token: info.token}));
  });
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "hello") { greeted = true; document.body.dataset.liveState = "open"; return; }
    const n = message.notification;
    if (n) {
      greeted = true;
      const badge = document.getElementById("unread-badge");
      setBadge(Number(badge ? badge.textContent : 0) + 1);
      addToFeed(n);
    }
  });
  ws.addEventListener("close", (event) => {
    document.body.dataset.liveState = "closed";
    if (!greeted && !useQuery && event.code === 1008) return connectLive(info, true, delay);
    // token expired or connection lost: fetch a fresh token and come back
    setTimeout(startLive, Math.min(delay * 2, 30000));
  });
}

async function startLive() {
  const endpoint = document.body.dataset.live;
  if (!endpoint) return;
  const response = await fetch(endpoint, {headers: {"Accept": "application/json"}});
  if (!response.ok) return;
  const info = await response.json();
  setBadge(info.unread);
  if (info.token && "WebSocket" in window) connectLive(info, false, 1000);
}

// Web push: register the service worker, subscribe with the server's VAPID key,
// and hand the subscription to the API (through this app: the tokens stay here).
function vapidBytes(key) {
  const padded = (key + "=".repeat((4 - key.length % 4) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

async function sendSubscription(subscription) {
  const box = document.getElementById("push");
  const response = await fetch(box.dataset.url, {method: "POST", body: JSON.stringify(subscription),
    headers: {"X-CSRFToken": document.body.dataset.csrf, "Content-Type": "application/json",
              "Accept": "application/json"}});
  const answer = await response.json();
  const state = document.getElementById("push-state");
  if (state) state.textContent = response.ok ? "On for this device." : (answer.detail || `HTTP ${response.status}`);
  box.dataset.state = response.ok ? "subscribed" : "refused";
  return {status: response.status, answer};
}
window.wfSendSubscription = sendSubscription;  // the browser test's way in when push is unavailable

async function subscribePush() {
  const box = document.getElementById("push");
  const state = document.getElementById("push-state");
  try {
    const registration = await navigator.serviceWorker.register(box.dataset.worker);
    await navigator.serviceWorker.ready;
    if ((await Notification.requestPermission()) !== "granted") throw new Error("notifications are blocked");
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true, applicationServerKey: vapidBytes(box.dataset.vapidKey)});
    await sendSubscription(subscription.toJSON());
  } catch (error) {
    box.dataset.state = "unavailable";
    if (state) state.textContent = `Push is not available here (${error.message || error}).`;
  }
}

async function deleteNotification(li) {
  const url = document.getElementById("feed").dataset.deleteUrl.replace("ID", encodeURIComponent(li.dataset.id));
  const response = await fetch(url, {method: "POST", headers: {
    "X-CSRFToken": document.body.dataset.csrf, "Accept": "application/json"}});
  if (!response.ok) return;
  li.remove();
  setBadge((await response.json()).unread);
}

async function pollBulk(box) {
  const response = await fetch(box.dataset.poll, {headers: {"Accept": "application/json"}});
  if (response.ok) {
    const job = await response.json();
    const finished = job.done + job.failed;
    const percent = Math.floor(finished * 100 / (job.total || 1));
    box.querySelector(".bar").style.width = `${percent}%`;
    box.dataset.done = String(finished);
    box.dataset.status = job.status;
    document.getElementById("bulk-percent").textContent = `${percent}%`;
    document.getElementById("bulk-counts").textContent =
      `${job.done} created, ${job.failed} failed of ${job.total}`;
    document.getElementById("bulk-status").textContent = job.status;
    if (job.status === "done") return;
  }
  setTimeout(() => pollBulk(box), 400);
}

document.addEventListener("DOMContentLoaded", () => {
  startLive();
  const box = document.getElementById("bulk-progress");
  if (box && box.dataset.status !== "done") pollBulk(box);
  document.querySelectorAll("form.mark-read").forEach((form) => {
    form.addEventListener("submit", (event) => { event.preventDefault(); markRead(form.closest("li")); });
  });
  document.querySelectorAll("form.delete").forEach((form) => {
    form.addEventListener("submit", (event) => { event.preventDefault(); deleteNotification(form.closest("li")); });
  });
  const pushButton = document.getElementById("push-subscribe");
  if (pushButton && "serviceWorker" in navigator && "PushManager" in window) {
    pushButton.hidden = false;
    pushButton.addEventListener("click", subscribePush);
  }
  document.querySelectorAll("[data-check-all]").forEach((button) => {
    button.addEventListener("click", () => document.querySelectorAll(
      `input[name="${button.dataset.checkAll}"]`).forEach((box) => { box.checked = true; }));
  });
  document.querySelectorAll("form.confirm").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm("Drop these dead letters for good?")) event.preventDefault();
    });
  });
});

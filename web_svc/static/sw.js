// The console's service worker: shows the web push messages the notifications
// service sends (payload {title, body, link}), and opens the link on a click.
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (_e) { data = {title: event.data.text()}; }
  event.waitUntil(self.registration.showNotification(data.title || "Workforce", {
    body: data.body || "", data: {link: data.link || "/notifications"}}));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow(event.notification.data.link));
});

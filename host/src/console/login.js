// The console's sign-in: POST /auth/login with fetch (the API sets the session cookies;
// fetch sends our Origin, which the CSRF guard wants on cookie-authenticated writes).
"use strict";

const CONSOLE = "/admin/console";

function showError(text) {
  const box = document.getElementById("login-error");
  box.textContent = text;
  box.hidden = false;
}

function mayUseConsole(session) {
  const role = session && session.user && session.user.role;
  return role === "admin" || role === "operator";
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) {
      return body.error.code + ": " + body.error.message;
    }
  } catch (_) {
    // not JSON: fall through
  }
  return "HTTP " + response.status;
}

async function signIn(event) {
  event.preventDefault();
  const button = document.getElementById("sign-in");
  const body = {
    email: document.getElementById("email").value.trim(),
    password: document.getElementById("password").value,
  };
  const tenant = document.getElementById("tenant").value.trim();
  if (tenant) {
    body.tenant = tenant;
  }
  button.disabled = true;
  try {
    const response = await fetch("/auth/login", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      showError(await errorText(response));
      return;
    }
    const session = await response.json();
    if (!mayUseConsole(session)) {
      showError("FORBIDDEN: the console is for admins and operators; this account is a "
        + session.user.role + ".");
      return;
    }
    window.location.assign(CONSOLE);
  } catch (e) {
    showError("the service did not answer: " + e.message);
  } finally {
    button.disabled = false;
  }
}

// A session whose access token expired may still hold a refresh token: use it.
async function resume() {
  try {
    const response = await fetch("/auth/refresh", { method: "POST", credentials: "same-origin" });
    if (response.ok && mayUseConsole(await response.json())) {
      window.location.assign(CONSOLE);
    }
  } catch (_) {
    // stay on the form
  }
}

document.getElementById("login-form").addEventListener("submit", signIn);
resume();

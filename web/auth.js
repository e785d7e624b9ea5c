// auth.js — logging in, registering, and keeping the session: the token
// lives in sessionStorage (this tab, until it closes) unless the person
// ticks "stay logged in", then in localStorage. The rules checked here are
// the server's (auth.proto), shown next to each field before submitting;
// the server checks them again.

import { call, describe } from './api.js';
import { $, say } from './dom.js';

const KEY = 'parley.session';

export function loadSession() {
  for (const store of [sessionStorage, localStorage]) {
    const raw = store.getItem(KEY);
    if (raw === null) continue;
    try {
      const s = JSON.parse(raw);
      if (typeof s.token === 'string' && typeof s.userId === 'string' &&
          !(Number(s.expiresAtMs) > 0 && Number(s.expiresAtMs) <= Date.now()))
        return s;
    } catch {
      // damaged: dropped below
    }
    store.removeItem(KEY);
  }
  return null;
}

function saveSession(s, stay) {
  clearSession();
  (stay ? localStorage : sessionStorage).setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

const utf8 = new TextEncoder();
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export function userIdProblem(id) {
  if (!/^[a-z0-9][a-z0-9_.-]{2,31}$/.test(id))
    return 'The user id must be 3 to 32 characters of lower-case letters, digits, _ . or -, starting with a letter or digit.';
  return '';
}

function passwordProblem(pw) {
  const n = utf8.encode(pw).length;
  if (n < 8) return 'The password must be at least 8 bytes long.';
  if (n > 1024) return 'The password must be at most 1024 bytes long.';
  return '';
}

function displayNameProblem(name) {
  const n = [...name].length;
  if (n < 1 || n > 64 || CONTROL.test(name))
    return 'The display name must be 1 to 64 characters, without control characters.';
  return '';
}

function emailProblem(email) {
  if (email === '') return '';
  const at = email.indexOf('@');
  if (utf8.encode(email).length > 254 || at <= 0 || at === email.length - 1 ||
      email.indexOf('@', at + 1) >= 0 || /[\s\u007f]/.test(email))
    return 'The email must be at most 254 characters with exactly one @ (or leave it empty).';
  return '';
}

// Marks the first field with a problem, focuses it, and says the problem.
function refuse(errEl, field, problem) {
  for (const el of errEl.closest('form').querySelectorAll('[aria-invalid]'))
    el.removeAttribute('aria-invalid');
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.focus();
  }
  say(errEl, problem);
}

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

// Wires the forms; onLoggedIn(session) runs after a successful login.
export function setupAuth(onLoggedIn) {
  const loginPanel = $('login-panel');
  const registerPanel = $('register-panel');
  const show = (which) => {
    loginPanel.hidden = which !== 'login';
    registerPanel.hidden = which !== 'register';
    (which === 'login' ? $('login-user') : $('reg-user')).focus();
  };
  $('show-register').addEventListener('click', () => show('register'));
  $('show-login').addEventListener('click', () => show('login'));

  async function login(userId, password, stay, errEl, button) {
    busy(button, true);
    try {
      const r = await call('Auth/Login', { userId, password });
      const s = {
        token: r.token,
        userId: r.user?.userId ?? userId,
        displayName: r.user?.displayName ?? userId,
        expiresAtMs: Number(r.expiresAtMs ?? 0),
      };
      saveSession(s, stay);
      onLoggedIn(s);
      return true;
    } catch (e) {
      refuse(errEl, null, e.code === 'unauthenticated'
        ? 'Wrong user id or password.'
        : describe(e, 'Could not log in'));
      return false;
    } finally {
      busy(button, false);
    }
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const user = $('login-user');
    const pw = $('login-password');
    const err = $('login-error');
    if (user.value.trim() === '') return refuse(err, user, 'Enter your user id.');
    if (pw.value === '') return refuse(err, pw, 'Enter your password.');
    refuse(err, null, '');
    if (await login(user.value.trim(), pw.value, $('login-stay').checked, err, $('login-submit')))
      pw.value = '';
  });

  $('register-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const f = {
      user: $('reg-user'), name: $('reg-name'), email: $('reg-email'),
      pw: $('reg-password'), pw2: $('reg-password2'),
    };
    const err = $('register-error');
    const userId = f.user.value.trim();
    const displayName = f.name.value.trim();
    const email = f.email.value.trim();
    const checks = [
      [f.user, userIdProblem(userId)],
      [f.name, displayNameProblem(displayName)],
      [f.email, emailProblem(email)],
      [f.pw, passwordProblem(f.pw.value)],
      [f.pw2, f.pw.value === f.pw2.value ? '' : 'The two passwords differ.'],
    ];
    for (const [field, problem] of checks)
      if (problem) return refuse(err, field, problem);
    refuse(err, null, '');
    const button = $('register-submit');
    busy(button, true);
    try {
      await call('Auth/Register', { userId, password: f.pw.value, displayName, email });
    } catch (e) {
      busy(button, false);
      return refuse(err, e.code === 'already_exists' ? f.user : null,
        e.code === 'already_exists'
          ? `The user id ${userId} is taken: please choose another.`
          : describe(e, 'Could not create the account'));
    }
    busy(button, false);
    if (await login(userId, f.pw.value, false, err, button)) {
      f.pw.value = '';
      f.pw2.value = '';
    }
  });

  return { show };
}

// dom.js — building the page from data without ever parsing data as HTML:
// every text goes in through textContent (or a Text node), every attribute
// through setAttribute, and no code here touches innerHTML.

// h('li', {class: 'msg', text: 'hi'}, child, ...) -> the element.
// props: class, text, on<event> (a listener), dataset, anything else an
// attribute (true = present, null/false/undefined = absent).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function $(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

// Shows text in el (a role=alert or status element); '' hides it.
export function say(el, text) {
  el.textContent = text;
  el.hidden = text === '';
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

// A <time> for ms since the epoch: "14:02" (with the day before it when
// it is not today), the full date as its title.
export function timeEl(ms) {
  const d = new Date(ms);
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return h('time', {
    datetime: d.toISOString(),
    title: fullFmt.format(d),
    text: sameDay ? timeFmt.format(d) : `${dayFmt.format(d)} ${timeFmt.format(d)}`,
  });
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

// A client_msg_id: 128 random bits, hex (at most 64 bytes by contract).
export function randomId() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

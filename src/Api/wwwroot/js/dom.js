// A tiny element builder: h('td', {class: 'num', 'data-testid': 'x'}, 'text', childNode).
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'value') element.value = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A table with a header row; `rows` is an array of <tr> or a <tbody> the caller keeps updating. */
export function table(headers, rows, attrs = {}) {
  const body = rows instanceof HTMLTableSectionElement ? rows : h('tbody', {}, rows);
  return h('table', attrs, h('thead', {}, h('tr', {}, headers.map(t => h('th', {}, t)))), body);
}

export const time = ts => (ts ? new Date(Number(ts)).toLocaleString() : '');

export const show = value => (value !== null && typeof value === 'object' ? JSON.stringify(value) : String(value ?? ''));

/*
 * ahdapa admin UI: a single page over the JSON API of this node.
 *   GET  /api/auth/session?optional=1   who is signed in (200 either way)
 *   POST /api/auth/login, /api/auth/logout
 *   /api/admin/clients, /api/admin/scopes, /api/gossip/status
 * The session cookie is HttpOnly; the CSRF token lives in memory only and is
 * sent as X-CSRF-Token on every state-changing request. The page builds all
 * DOM from data with textContent (never innerHTML) and runs under a strict
 * CSP (no inline code or styles). The visible list refreshes every 2 s.
 */
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const VIEWS = ['clients', 'scopes', 'session', 'cluster'];
  const ADMIN_VIEWS = ['clients', 'scopes', 'cluster'];

  const state = {
    session: null, // session document; csrf_token kept here, in memory only
    view: null,
    timer: 0,
    loading: false,
    pending: null, // {kind: 'client'|'scope', id} awaiting delete confirmation
    clients: null,
    scopes: null,
    cluster: null,
    seq: 0,
    inflight: new Set(), // loads under way (logout waits for them)
    leaving: false, // logging out: start no more loads
    rendered: {}, // view -> key of the data last rendered
  };

  const $ = (id) => document.getElementById(id);

  /* An element with attributes and children; strings become text nodes. */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat()) {
      if (k !== null && k !== undefined && k !== false) e.append(k);
    }
    return e;
  }

  /* ---- feedback ---- */

  function say(msg) {
    $('status').textContent = msg;
  }

  function alertMsg(msg) {
    const a = $('alert');
    if (a.textContent !== (msg || '')) a.textContent = msg || '';
  }

  /* ---- HTTP ---- */

  class ApiError extends Error {
    constructor(status, data, retryAfter) {
      super((data && (data.error_description || data.error)) || `HTTP ${status}`);
      this.status = status;
      this.data = data;
      this.retryAfter = retryAfter;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && state.session) headers['X-CSRF-Token'] = state.session.csrf_token;
    let res;
    try {
      res = await fetch(path, {
        method, headers, credentials: 'same-origin', cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, { error_description: 'cannot reach the server' });
    }
    let data = null;
    const text = res.status === 204 ? '' : await res.text();
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) throw new ApiError(res.status, data, res.headers.get('Retry-After'));
    return data;
  }

  /* Reports an API failure; a refused session sends the user back to sign in. */
  function failed(e, what) {
    if (e.status === 401 && state.session) {
      signedOut('Your session has ended. Please sign in again.');
      return;
    }
    alertMsg(`${what}: ${e.message}`);
  }

  /* ---- formatting ---- */

  function ago(ms) {
    if (!ms) return 'never';
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 2) return 'just now';
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function until(sec) {
    const s = Math.round(sec - Date.now() / 1000);
    if (s <= 0) return 'expired';
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `in ${h} h ${m} min` : `in ${m} min`;
  }

  function bytes(n) {
    if (!Number.isFinite(n)) return '–';
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return i ? `${n.toFixed(1)} ${u[i]}` : `${n} B`;
  }

  const num = (n) => (Number.isFinite(n) ? n.toLocaleString('en') : '–');
  const time = (ms) => el('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toLocaleString() }, ago(ms));

  function list(items, empty, cls) {
    if (!items || !items.length) return el('span', { class: 'muted' }, empty);
    return el('ul', { class: cls || 'plain' }, items.map((x) => el('li', null, x)));
  }

  /* ---- rendering ---- */

  /* Replaces tbody's rows, keeping focus on the same action button if any. */
  function replaceRows(tbody, rows) {
    const f = document.activeElement;
    const keep = f && tbody.contains(f) ? [f.dataset.action, f.dataset.id] : null;
    tbody.replaceChildren(...rows);
    if (keep) {
      const b = [...tbody.querySelectorAll('button')].find(
        (x) => x.dataset.action === keep[0] && x.dataset.id === keep[1]);
      if (b) b.focus();
    }
  }

  /* The actions cell: a Delete button, or the in-page confirmation. */
  function actions(kind, id, label) {
    const p = state.pending;
    if (p && p.kind === kind && p.id === id) {
      return el('td', { class: 'actions confirm' },
        el('span', { class: 'confirm-q' }, `Delete this ${kind}?`),
        el('button', { type: 'button', class: 'btn danger small', 'data-action': 'confirm', 'data-id': id,
          'data-testid': 'confirm-delete', 'aria-label': `Yes, delete ${label}` }, 'Delete'),
        el('button', { type: 'button', class: 'btn small', 'data-action': 'cancel', 'data-id': id,
          'data-testid': 'cancel-delete' }, 'Cancel'));
    }
    return el('td', { class: 'actions' },
      el('button', { type: 'button', class: 'btn small', 'data-action': 'delete', 'data-id': id,
        'data-testid': 'delete', 'aria-label': `Delete ${label}` }, 'Delete'));
  }

  function changed(view, data) {
    const key = JSON.stringify([data, state.pending]);
    if (state.rendered[view] === key) return false;
    state.rendered[view] = key;
    return true;
  }

  function renderClients() {
    const cs = state.clients || [];
    if (state.pending && state.pending.kind === 'client' && !cs.some((c) => c.client_id === state.pending.id)) {
      state.pending = null;
    }
    if (!changed('clients', cs)) return;
    $('clients-count').textContent = `(${cs.length})`;
    const rows = cs.map((c) => el('tr', { 'data-testid': 'client-row', 'data-client-id': c.client_id },
      el('th', { scope: 'row' }, c.client_name || ''),
      el('td', null, el('code', { class: 'id' }, c.client_id)),
      el('td', null, el('span', { class: `badge ${c.client_type}` }, c.client_type || '')),
      el('td', null, el('code', null, c.token_endpoint_auth_method || '')),
      el('td', null, list((c.scope || '').split(' ').filter(Boolean), 'none', 'tags')),
      el('td', { class: 'uris' }, list(c.redirect_uris, 'none')),
      actions('client', c.client_id, `client ${c.client_name}`)));
    if (!rows.length) {
      rows.push(el('tr', null, el('td', { colspan: 7, class: 'empty' }, 'No clients yet. Create one below.')));
    }
    replaceRows($('clients-body'), rows);
  }

  function renderScopes() {
    const ss = state.scopes || [];
    if (state.pending && state.pending.kind === 'scope' && !ss.some((s) => s.name === state.pending.id)) {
      state.pending = null;
    }
    if (!changed('scopes', ss)) return;
    $('scopes-count').textContent = `(${ss.length})`;
    const rows = ss.map((s) => el('tr', { 'data-testid': 'scope-row', 'data-scope': s.name },
      el('th', { scope: 'row' }, el('code', null, s.name)),
      el('td', null, s.description || el('span', { class: 'muted' }, '—')),
      el('td', null, list(s.claims, 'none', 'tags')),
      actions('scope', s.name, `scope ${s.name}`)));
    if (!rows.length) {
      rows.push(el('tr', null, el('td', { colspan: 4, class: 'empty' }, 'No scope definitions yet.')));
    }
    replaceRows($('scopes-body'), rows);
  }

  function renderSession() {
    const s = state.session;
    $('session-user').textContent = s.username;
    $('session-groups').textContent = (s.groups || []).join(', ') || 'none';
    $('session-expires').replaceChildren(s.expires_at
      ? el('time', { datetime: new Date(s.expires_at * 1000).toISOString() },
        `${new Date(s.expires_at * 1000).toLocaleString()} (${until(s.expires_at)})`)
      : 'unknown');
    $('session-node').textContent = $('who-node').textContent;
  }

  function nodeRow(id, url, self, p) {
    const state_ = self ? ['self', 'this node'] : p.last_ok ? ['ok', 'reachable']
      : p.last_success_ms ? ['bad', 'failing'] : ['bad', 'not reached yet'];
    return el('tr', { 'data-testid': 'node-row', 'data-node-id': id, class: self ? 'self' : null },
      el('th', { scope: 'row' }, el('code', null, id), el('br'), el('code', { class: 'sub' }, url || '')),
      el('td', null, el('span', { class: `badge ${state_[0]}` }, state_[1])),
      el('td', { 'data-testid': 'last-contact' }, self ? '—' : p.last_success_ms ? time(p.last_success_ms) : 'never'),
      el('td', null, self ? '—' : p.in_sync ? 'yes' : 'no'),
      ...['pushes', 'skips', 'exchanges', 'failures'].map((k) => el('td', { class: 'num' }, num(p[k]))),
      el('td', { class: 'num' }, bytes(p.bytes_out)),
      el('td', { class: 'num' }, bytes(p.bytes_in)));
  }

  function renderCluster() {
    const st = state.cluster;
    if (!st) return;
    const on = st.enabled !== false;
    $('cluster-disabled').hidden = on;
    $('cluster-enabled').hidden = !on;
    if (!on) return;
    const t = st.totals || {};
    const facts = [
      ['This node', el('code', null, st.node_id)], ['URL', el('code', null, st.url || '')],
      ['Members', num(st.members)], ['Generation', num(st.generation)],
      ['Pushes', num(t.pushes)], ['Rounds', num(t.rounds)], ['Skips', num(t.skips)],
      ['Exchanges', num(t.exchanges)], ['Failures', num(t.failures)], ['Served', num(t.served)],
      ['Bytes out', bytes(t.bytes_out)], ['Bytes in', bytes(t.bytes_in)],
      ['Entries applied', num(t.entries_applied)],
    ];
    $('cluster-summary').replaceChildren(...facts.map(([k, v]) => el('div', null, el('dt', null, k), el('dd', null, v))));
    const rows = [nodeRow(st.node_id, st.url, true, t)];
    for (const p of st.peers || []) rows.push(nodeRow(p.node_id, p.url, false, p));
    replaceRows($('cluster-body'), rows);
  }

  /* ---- loading ---- */

  const PATHS = {
    clients: '/api/admin/clients', scopes: '/api/admin/scopes',
    cluster: '/api/gossip/status', session: '/api/auth/session?optional=1',
  };

  /* Fetches and renders view; an answer overtaken by a later load is dropped. */
  async function load(view) {
    const seq = ++state.seq;
    const data = await api('GET', PATHS[view]);
    if (seq !== state.seq || !state.session || state.view !== view) return;
    switch (view) {
      case 'clients':
        state.clients = data.clients || [];
        renderClients();
        break;
      case 'scopes':
        state.scopes = data.scopes || [];
        renderScopes();
        break;
      case 'cluster':
        state.cluster = data;
        if (data.node_id) $('who-node').textContent = data.node_id;
        renderCluster();
        break;
      case 'session': {
        const s = data;
        if (!s || !s.authenticated) {
          signedOut('Your session has ended. Please sign in again.');
          return;
        }
        state.session = s;
        renderSession();
        break;
      }
      default:
    }
    $('updated').textContent = `Auto-refresh every ${REFRESH_MS / 1000} s · updated ${new Date().toLocaleTimeString()}`;
  }

  /* Loads the visible view. mode 'auto' (the timer) skips while a load is in
   * flight; 'force' (after a change) and 'manual' (Refresh button) do not. */
  async function refresh(mode) {
    const view = state.view;
    if (!state.session || !view || state.leaving || (state.loading && mode === 'auto')) return;
    state.loading = true;
    const p = load(view);
    state.inflight.add(p);
    try {
      await p;
      if (mode === 'manual') say(`${view[0].toUpperCase()}${view.slice(1)} refreshed.`);
    } catch (e) {
      if (state.session) failed(e, `Cannot load ${view}`);
    } finally {
      state.inflight.delete(p);
      state.loading = state.inflight.size > 0;
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (!state.session) return;
    state.timer = setTimeout(async () => {
      if (document.visibilityState === 'visible') await refresh('auto');
      schedule();
    }, REFRESH_MS);
  }

  /* ---- views ---- */

  const isAdmin = () => !!state.session && (state.session.groups || []).includes('admins');

  function showView(view, focus) {
    if (!isAdmin() && ADMIN_VIEWS.includes(view)) view = 'session';
    if (state.view === 'clients' && view !== 'clients') dismissSecret();
    if (state.view && state.view !== view) say('');
    state.view = view;
    state.pending = null;
    state.rendered = {};
    alertMsg('');
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
    for (const b of document.querySelectorAll('#nav .tab')) {
      if (b.dataset.view === view) b.setAttribute('aria-current', 'page');
      else b.removeAttribute('aria-current');
    }
    history.replaceState(null, '', `#${view}`);
    if (view === 'session') renderSession();
    if (focus) $(`h-${view}`).focus();
    refresh('force');
    schedule();
  }

  function signedIn(s, focus) {
    state.session = s;
    $('view-login').hidden = true;
    $('who').hidden = false;
    $('nav').hidden = false;
    $('who-user').textContent = s.username;
    $('who-node').textContent = location.host;
    for (const b of document.querySelectorAll('#nav .tab')) {
      b.hidden = !isAdmin() && ADMIN_VIEWS.includes(b.dataset.view);
    }
    const want = location.hash.slice(1);
    showView(VIEWS.includes(want) ? want : 'clients', focus);
    if (!isAdmin()) {
      alertMsg('This account is not in the group "admins": the admin API is not available to it.');
    } else if (state.view !== 'cluster') {
      api('GET', '/api/gossip/status').then((st) => {
        if (st && st.node_id) $('who-node').textContent = st.node_id;
      }, () => {});
    }
  }

  function signedOut(msg) {
    clearTimeout(state.timer);
    dismissSecret();
    Object.assign(state, { session: null, view: null, pending: null, clients: null, scopes: null,
      cluster: null, rendered: {}, seq: state.seq + 1 });
    for (const id of ['clients-body', 'scopes-body', 'cluster-body', 'cluster-summary']) $(id).replaceChildren();
    for (const v of VIEWS) $(`view-${v}`).hidden = true;
    $('who').hidden = true;
    $('nav').hidden = true;
    $('updated').textContent = '';
    $('view-login').hidden = false;
    history.replaceState(null, '', location.pathname);
    alertMsg(msg || '');
    $('login-username').focus();
  }

  /* ---- client secret, shown once ---- */

  function showSecret(c) {
    $('secret-name').textContent = c.client_name;
    $('secret-client-id').textContent = c.client_id;
    $('secret-value').value = c.client_secret;
    $('secret-panel').hidden = false;
    $('secret-value').focus();
    $('secret-value').select();
  }

  /* Forgets the secret: it exists only in this field until dismissed. */
  function dismissSecret() {
    $('secret-value').value = '';
    $('secret-name').textContent = '';
    $('secret-client-id').textContent = '';
    $('secret-panel').hidden = true;
  }

  async function copySecret() {
    const inp = $('secret-value');
    inp.focus();
    inp.select();
    try {
      await navigator.clipboard.writeText(inp.value);
      say('Client secret copied to the clipboard.');
    } catch (e) {
      say('The browser blocked copying: the secret is selected, press Ctrl+C to copy it.');
    }
  }

  /* ---- actions ---- */

  async function login(ev) {
    ev.preventDefault();
    const btn = ev.target.querySelector('button[type=submit]');
    const pw = $('login-password');
    alertMsg('');
    btn.disabled = true;
    try {
      const s = await api('POST', '/api/auth/login',
        { username: $('login-username').value.trim(), password: pw.value });
      pw.value = '';
      say(`Signed in as ${s.username}.`);
      signedIn(s, true);
    } catch (e) {
      if (e.status === 401) alertMsg('Wrong user name or password.');
      else if (e.status === 429) alertMsg(`Too many sign-in attempts. Try again in ${e.retryAfter || 'a few'} seconds.`);
      else alertMsg(`Cannot sign in: ${e.message}`);
      pw.focus();
      pw.select();
    } finally {
      btn.disabled = false;
    }
  }

  async function logout() {
    clearTimeout(state.timer);
    state.leaving = true;
    // A load answered after the logout would fail with 401: let them finish.
    await Promise.allSettled([...state.inflight]);
    try {
      await api('POST', '/api/auth/logout');
    } catch (e) {
      if (e.status !== 401) {
        failed(e, 'Cannot log out');
        schedule();
        return;
      }
    } finally {
      state.leaving = false;
    }
    signedOut('');
    say('Signed out.');
  }

  function syncClientForm() {
    const f = $('client-form');
    const pub = f.elements.namedItem('client_type').value === 'public';
    const sel = $('client-auth');
    sel.querySelector('option[value=none]').disabled = !pub;
    for (const o of sel.options) if (o.value !== 'none') o.disabled = pub;
    if (pub) sel.value = 'none';
    else if (sel.value === 'none') sel.value = 'client_secret_basic';
    const cc = f.querySelector('input[name=grant_types][value=client_credentials]');
    cc.disabled = pub;
    if (pub) cc.checked = false;
  }

  async function createClient(ev) {
    ev.preventDefault();
    const f = ev.target;
    const type = f.elements.namedItem('client_type').value;
    const body = {
      client_name: $('client-name').value.trim(),
      client_type: type,
      token_endpoint_auth_method: type === 'public' ? 'none' : $('client-auth').value,
      redirect_uris: $('client-uris').value.split('\n').map((s) => s.trim()).filter(Boolean),
      scope: $('client-scope').value.trim().split(/\s+/).filter(Boolean).join(' '),
    };
    const grants = [...f.querySelectorAll('input[name=grant_types]:checked')].map((x) => x.value);
    if (grants.length) body.grant_types = grants;
    alertMsg('');
    dismissSecret();
    try {
      const c = await api('POST', '/api/admin/clients', body);
      f.reset();
      syncClientForm();
      say(`Client ${c.client_name} created (${c.client_type}).`);
      if (c.client_secret) showSecret(c);
      await refresh('force');
    } catch (e) {
      failed(e, 'Cannot create the client');
    }
  }

  async function createScope(ev) {
    ev.preventDefault();
    const f = ev.target;
    const body = {
      name: $('scope-name').value.trim(),
      description: $('scope-description').value.trim(),
      claims: $('scope-claims').value.split(',').map((s) => s.trim()).filter(Boolean),
    };
    alertMsg('');
    try {
      const s = await api('POST', '/api/admin/scopes', body);
      f.reset();
      say(`Scope ${s.name} created.`);
      await refresh('force');
    } catch (e) {
      failed(e, 'Cannot create the scope');
    }
  }

  /* Delete / confirm / cancel buttons in the clients and scopes tables. */
  async function rowAction(kind, ev) {
    const b = ev.target.closest('button[data-action]');
    if (!b) return;
    const id = b.dataset.id;
    const render = kind === 'client' ? renderClients : renderScopes;
    const focusOn = (action) => {
      const t = [...ev.currentTarget.querySelectorAll('button')].find(
        (x) => x.dataset.action === action && x.dataset.id === id);
      if (t) t.focus();
    };
    if (b.dataset.action === 'delete') {
      state.pending = { kind, id };
      render();
      focusOn('cancel');
    } else if (b.dataset.action === 'cancel') {
      state.pending = null;
      render();
      focusOn('delete');
    } else if (b.dataset.action === 'confirm') {
      b.disabled = true;
      const path = kind === 'client' ? '/api/admin/clients/' : '/api/admin/scopes/';
      try {
        await api('DELETE', path + encodeURIComponent(id));
        state.pending = null;
        say(`${kind === 'client' ? 'Client' : 'Scope'} ${id} deleted.`);
        $(`h-${state.view}`).focus();
        await refresh('force');
      } catch (e) {
        b.disabled = false;
        if (e.status === 404) {
          state.pending = null;
          say(`${kind === 'client' ? 'Client' : 'Scope'} ${id} was already deleted.`);
          await refresh('force');
        } else {
          failed(e, 'Cannot delete');
        }
      }
    }
  }

  /* ---- start ---- */

  function wire() {
    $('login-form').addEventListener('submit', login);
    $('client-form').addEventListener('submit', createClient);
    $('scope-form').addEventListener('submit', createScope);
    for (const r of $('client-form').querySelectorAll('input[name=client_type]')) {
      r.addEventListener('change', syncClientForm);
    }
    $('clients-body').addEventListener('click', (ev) => rowAction('client', ev));
    $('scopes-body').addEventListener('click', (ev) => rowAction('scope', ev));
    for (const b of document.querySelectorAll('#nav .tab')) {
      b.addEventListener('click', () => showView(b.dataset.view, true));
    }
    for (const b of document.querySelectorAll('[data-refresh]')) {
      b.addEventListener('click', () => refresh('manual'));
    }
    $('secret-copy').addEventListener('click', copySecret);
    $('secret-dismiss').addEventListener('click', () => {
      dismissSecret();
      say('The client secret was dismissed.');
      $('h-clients').focus();
    });
    $('logout').addEventListener('click', logout);
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && state.pending) {
        const kind = state.pending.kind;
        const id = state.pending.id;
        state.pending = null;
        if (kind === 'client') renderClients(); else renderScopes();
        const t = [...document.querySelectorAll(`#${kind}s-body button[data-action=delete]`)].find((x) => x.dataset.id === id);
        if (t) t.focus();
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && state.session) refresh('auto');
    });
    syncClientForm();
  }

  async function boot() {
    wire();
    try {
      const s = await api('GET', '/api/auth/session?optional=1');
      if (s && s.authenticated) {
        signedIn(s, false);
        return;
      }
    } catch (e) {
      alertMsg(`Cannot check the session: ${e.message}`);
    }
    signedOut($('alert').textContent);
  }

  boot();
})();

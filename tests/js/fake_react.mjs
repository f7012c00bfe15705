// Just enough of React's hooks to render one hook-using function and re-render
// it when its state changes: the React hook ships without React, so its test
// brings this instead.
let component = null;
let slots = [];
let cursor = 0;
let pendingEffects = [];
let scheduled = false;

const changed = (deps, previous) =>
  !deps || !previous || deps.length !== previous.length || deps.some((d, i) => !Object.is(d, previous[i]));

export function useState(initial) {
  const index = cursor++;
  if (!(index in slots)) slots[index] = typeof initial === "function" ? initial() : initial;
  const set = (value) => {
    const next = typeof value === "function" ? value(slots[index]) : value;
    if (!Object.is(next, slots[index])) {
      slots[index] = next;
      schedule();
    }
  };
  return [slots[index], set];
}

export function useRef(initial) {
  const index = cursor++;
  if (!(index in slots)) slots[index] = { current: initial };
  return slots[index];
}

export function useEffect(effect, deps) {
  const index = cursor++;
  const previous = slots[index];
  if (previous && !changed(deps, previous.deps)) return;
  const slot = { deps, cleanup: previous?.cleanup };
  slots[index] = slot;
  pendingEffects.push(() => {
    if (typeof slot.cleanup === "function") slot.cleanup();
    slot.cleanup = effect();
  });
}

export function useCallback(callback, deps) {
  const index = cursor++;
  const previous = slots[index];
  if (previous && !changed(deps, previous.deps)) return previous.callback;
  slots[index] = { callback, deps };
  return callback;
}

function rerender() {
  cursor = 0;
  window.hookResult = component();
  window.hookRenders = (window.hookRenders || 0) + 1;
  const effects = pendingEffects;
  pendingEffects = [];
  effects.forEach((run) => run());
}

function schedule() {
  if (scheduled || !component) return;
  scheduled = true;
  queueMicrotask(() => {
    scheduled = false;
    if (component) rerender();
  });
}

export function render(fn) {
  component = fn;
  slots = [];
  rerender();
}

export function unmount() {
  for (const slot of slots) {
    if (slot && typeof slot.cleanup === "function") slot.cleanup();
  }
  component = null;
}

export default { useState, useRef, useEffect, useCallback };

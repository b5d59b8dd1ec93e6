import { useState } from 'preact/hooks';

/** Height of one row of a windowed table (px); its cells are one line (see .virtual in style.css). */
export const ROW_HEIGHT = 28;

/**
 * A windowed table body: of `count` rows only those in the scroll box (plus `overscan` either
 * side) are in the page; spacer rows stand for the rest. Returns the slice to render, the spacer
 * heights, and the scroll box's props.
 */
export function useWindow(count: number, height = 560, overscan = 8) {
  const [top, setTop] = useState(0);
  const first = Math.min(Math.max(0, Math.floor(top / ROW_HEIGHT) - overscan), Math.max(0, count - 1));
  const last = Math.min(count, Math.ceil((top + height) / ROW_HEIGHT) + overscan);
  return {
    first,
    last,
    padTop: first * ROW_HEIGHT,
    padBottom: Math.max(0, count - last) * ROW_HEIGHT,
    box: {
      class: 'virtual',
      style: { maxHeight: `${height}px` },
      onScroll: (e: Event) => setTop((e.currentTarget as HTMLElement).scrollTop),
    },
  };
}

/** A spacer row standing for rows not rendered. */
export function Spacer(props: { height: number; columns: number }) {
  return props.height > 0 ? (
    <tr class="spacer" aria-hidden="true">
      <td colSpan={props.columns} style={{ height: `${props.height}px`, padding: 0, border: 0 }} />
    </tr>
  ) : null;
}

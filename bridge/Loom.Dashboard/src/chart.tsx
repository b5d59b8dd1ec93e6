import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Series {
  label: string;
  color: string;
}

/** A live time-series chart: x is unix seconds, one y array per series. */
export function Chart(props: { title: string; series: Series[]; data: [number[], ...number[][]]; testId: string }) {
  const host = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    if (!host.current) return undefined;
    const width = Math.max(280, host.current.clientWidth);
    const options: uPlot.Options = {
      width,
      height: 170,
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [
        { stroke: '#8a94a6', grid: { stroke: '#2a3142' }, values: (_u, splits) => splits.map((t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour12: false })) },
        { stroke: '#8a94a6', grid: { stroke: '#2a3142' }, size: 50 },
      ],
      series: [{}, ...props.series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, points: { show: false } }))],
    };
    plot.current = new uPlot(options, props.data, host.current);
    const resize = new ResizeObserver(() => {
      if (host.current && plot.current) plot.current.setSize({ width: Math.max(280, host.current.clientWidth), height: 170 });
    });
    resize.observe(host.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.series.map((s) => s.label).join('|')]);

  useEffect(() => {
    plot.current?.setData(props.data);
  }, [props.data]);

  return (
    <div class="card chart" data-testid={props.testId}>
      <h3>{props.title}</h3>
      <div ref={host} />
    </div>
  );
}

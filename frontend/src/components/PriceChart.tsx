import {
  CandlestickSeries,
  createChart,
  HistogramSeries,
  type IChartApi,
  type ISeriesApi,
  LineSeries,
  LineStyle,
  type SeriesType,
  type Time,
} from "lightweight-charts";
import { useEffect, useRef } from "react";
import type { IndicatorRow } from "../api/types";
import { useAppServices, useMarket } from "../appServices";
import { candlePoint, DOWN_COLOR, priceFormat, UP_COLOR, volumePoint } from "../market/chartSeries";
import { instrumentLabel } from "../market/venues";
import { indicatorLine } from "../market/indicatorMerge";
import type { MarketState } from "../market/marketStore";
import { OVERLAYS, type OverlayVisibility, type PaneVisibility } from "../market/overlays";

const VISIBLE_BARS = 150;

interface ChartParts {
  chart: IChartApi;
  candles: ISeriesApi<"Candlestick">;
  volume: ISeriesApi<"Histogram">;
  overlays: Map<string, ISeriesApi<"Line">>;
  oscillators: ISeriesApi<SeriesType>[];
}

// Lightweight Charts types time as a branded number; the gateway's is plain Unix seconds.
const asTime = <T extends { time: number }>(points: T[]) =>
  points as unknown as (Omit<T, "time"> & { time: Time })[];

function buildChart(container: HTMLElement): ChartParts {
  const chart = createChart(container, {
    autoSize: true,
    layout: {
      background: { color: "#0f141a" },
      textColor: "#c3ccd6",
      attributionLogo: false,
      panes: { separatorColor: "#27313d", enableResize: true },
    },
    grid: { vertLines: { color: "#1b232c" }, horzLines: { color: "#1b232c" } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#27313d" },
    rightPriceScale: { borderColor: "#27313d" },
  });
  const candles = chart.addSeries(CandlestickSeries, {
    upColor: UP_COLOR,
    downColor: DOWN_COLOR,
    wickUpColor: UP_COLOR,
    wickDownColor: DOWN_COLOR,
    borderVisible: false,
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.06, bottom: 0.26 } });
  const volume = chart.addSeries(HistogramSeries, {
    priceFormat: { type: "volume" },
    priceScaleId: "volume",
    lastValueVisible: false,
    priceLineVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
  const overlays = new Map<string, ISeriesApi<"Line">>();
  for (const overlay of OVERLAYS) {
    for (const column of overlay.columns) {
      overlays.set(
        column,
        chart.addSeries(LineSeries, {
          color: overlay.color,
          lineWidth: column === "bb_middle" ? 1 : 2,
          lineStyle: column.startsWith("bb_") ? LineStyle.Dashed : LineStyle.Solid,
          lastValueVisible: false,
          priceLineVisible: false,
          crosshairMarkerVisible: false,
          visible: false,
        }),
      );
    }
  }
  return { chart, candles, volume, overlays, oscillators: [] };
}

function drawBars(parts: ChartParts, state: MarketState, previousSeq: number): void {
  const { change, seq } = state.barsChange;
  if (change.kind === "none") return;
  if (change.kind === "reset" || seq !== previousSeq + 1) {
    parts.candles.setData(asTime(state.bars.map(candlePoint)));
    parts.volume.setData(asTime(state.bars.map(volumePoint)));
    return;
  }
  const historical = change.kind === "replace";
  parts.candles.update(asTime([candlePoint(change.bar)])[0]!, historical);
  parts.volume.update(asTime([volumePoint(change.bar)])[0]!, historical);
}

function drawOverlays(parts: ChartParts, rows: IndicatorRow[], visible: OverlayVisibility): void {
  for (const overlay of OVERLAYS) {
    for (const column of overlay.columns) {
      const series = parts.overlays.get(column)!;
      series.applyOptions({ visible: visible[overlay.id] });
      series.setData(asTime(visible[overlay.id] ? indicatorLine(rows, column) : []));
    }
  }
}

/** Rebuild the RSI and MACD panes (in that order) under the price pane. */
function drawOscillators(parts: ChartParts, rows: IndicatorRow[], panes: PaneVisibility): void {
  const { chart } = parts;
  for (const series of parts.oscillators) chart.removeSeries(series);
  parts.oscillators = [];
  for (let index = chart.panes().length - 1; index > 0; index -= 1) chart.removePane(index);
  let paneIndex = 1;
  if (panes.rsi) {
    const rsi = chart.addSeries(LineSeries, { color: "#c77dff", lineWidth: 2, priceLineVisible: false }, paneIndex);
    rsi.setData(asTime(indicatorLine(rows, "rsi")));
    for (const level of [70, 30]) {
      rsi.createPriceLine({ price: level, color: "#5c6773", lineStyle: LineStyle.Dashed, lineWidth: 1, axisLabelVisible: true, title: "" });
    }
    parts.oscillators.push(rsi);
    paneIndex += 1;
  }
  if (panes.macd) {
    const histogram = chart.addSeries(HistogramSeries, { priceLineVisible: false, lastValueVisible: false }, paneIndex);
    histogram.setData(
      asTime(
        indicatorLine(rows, "macd_histogram").map((point) => ({
          ...point,
          color: point.value >= 0 ? `${UP_COLOR}99` : `${DOWN_COLOR}99`,
        })),
      ),
    );
    const macd = chart.addSeries(LineSeries, { color: "#4fa3f7", lineWidth: 2, priceLineVisible: false }, paneIndex);
    macd.setData(asTime(indicatorLine(rows, "macd")));
    const signal = chart.addSeries(LineSeries, { color: "#ff9f1c", lineWidth: 1, priceLineVisible: false }, paneIndex);
    signal.setData(asTime(indicatorLine(rows, "macd_signal")));
    parts.oscillators.push(histogram, macd, signal);
  }
  const all = chart.panes();
  all[0]?.setStretchFactor(3);
  for (const pane of all.slice(1)) pane.setStretchFactor(1);
}

function showLatest(parts: ChartParts, count: number): void {
  parts.chart.timeScale().setVisibleLogicalRange({ from: count - VISIBLE_BARS, to: count + 3 });
}

/** Candles, volume, overlays and the RSI/MACD panes, all on one synchronised time axis. */
export function PriceChart() {
  const { market } = useAppServices();
  const container = useRef<HTMLDivElement>(null);
  const chartState = useMarket((state) => state.chartState);
  const chartError = useMarket((state) => state.chartError);
  const instrument = useMarket((state) => state.instrument);
  const shown = instrument === null ? null : instrumentLabel(instrument);
  const barCount = useMarket((state) => state.bars.length);
  const firstTime = useMarket((state) => state.bars[0]?.time ?? 0);
  const lastTime = useMarket((state) => state.bars[state.bars.length - 1]?.time ?? 0);
  const anyPane = useMarket((state) => state.panes.rsi || state.panes.macd);

  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    const parts = buildChart(element);
    let state = market.getState();
    let seq = state.barsChange.seq - 1;
    let positioned = false;
    let format = "";
    const formatPrices = (next: MarketState) => {
      // The axis writes prices to the instrument's tick ("0.1": one digit), not a fixed two.
      const entry = next.symbols.find((candidate) => candidate.instrument === next.instrument);
      const wanted = priceFormat(entry?.price_increment, next.bars);
      const key = `${wanted.precision}/${wanted.minMove}`;
      if (key === format) return;
      format = key;
      parts.candles.applyOptions({ priceFormat: { type: "price", ...wanted } });
    };
    const draw = (next: MarketState, previous: MarketState | null) => {
      if (next.barsChange.seq !== seq && next.barsChange.change.kind === "reset") formatPrices(next);
      if (next.barsChange.seq !== seq) {
        drawBars(parts, next, seq);
        seq = next.barsChange.seq;
        if (next.bars.length === 0) positioned = false;
        else if (!positioned) {
          showLatest(parts, next.bars.length);
          positioned = true;
        }
      }
      const indicatorsChanged = previous === null || next.indicators !== previous.indicators;
      if (indicatorsChanged || next.overlays !== previous?.overlays) {
        drawOverlays(parts, next.indicators, next.overlays);
      }
      if (indicatorsChanged || next.panes !== previous?.panes) {
        drawOscillators(parts, next.indicators, next.panes);
      }
    };
    draw(state, null);
    const unsubscribe = market.subscribe((next, previous) => {
      state = next;
      draw(next, previous);
    });
    return () => {
      unsubscribe();
      parts.chart.remove();
    };
  }, [market]);

  const overlayText =
    chartState === "loading" ? "Loading candles…"
    : chartState === "empty" ? `No bars for ${shown ?? "this instrument"} yet. They appear as trades arrive.`
    : chartState === "error" ? `Candles could not be loaded: ${chartError}`
    : chartState === "idle" ? "Pick an instrument."
    : null;
  return (
    <div className={`price-chart${anyPane ? " with-panes" : ""}`}>
      <div
        ref={container}
        className="chart-canvas"
        data-testid="price-chart"
        data-state={chartState}
        data-bars={barCount}
        data-first-time={firstTime}
        data-last-time={lastTime}
        data-instrument={instrument ?? ""}
        role="img"
        aria-label={`Candlestick chart of ${shown ?? "no instrument"}, ${barCount} bars`}
      />
      {overlayText !== null && (
        <div className={`chart-overlay ${chartState}`} role={chartState === "error" ? "alert" : "status"}>
          {overlayText}
        </div>
      )}
    </div>
  );
}

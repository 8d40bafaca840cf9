import { useEffect } from "react";
import { useAppServices, useMarket, useSession } from "../appServices";
import { instrumentPath } from "../api/gateway";
import { startMarketSync } from "../market/marketSync";
import { startUrlSync } from "../market/urlState";
import { startReplaySync } from "../replay/replaySync";
import { AlertsPanel } from "./AlertsPanel";
import { ChartControls } from "./ChartControls";
import { ConnectionStatus } from "./ConnectionStatus";
import { FeaturesTable } from "./FeaturesTable";
import { LastPrice } from "./LastPrice";
import { PriceChart } from "./PriceChart";
import { QualityBadge } from "./QualityBadge";
import { ReplayControls } from "./ReplayControls";
import { SourceBanner } from "./SourceBanner";
import { SymbolPicker } from "./SymbolPicker";
import { TimeframeSwitch } from "./TimeframeSwitch";

const ALERT_POLL_MS = 15_000;

function socketUrl(instrument: string, route = "ws"): string {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}/${route}/${instrumentPath(instrument)}`;
}

const SYMBOL_RETRY_MS = 3000;

export function Dashboard() {
  const { session, market, alerts } = useAppServices();
  const user = useSession((state) => state.user);
  const symbolsState = useMarket((state) => state.symbolsState);
  const symbolsError = useMarket((state) => state.symbolsError);

  // A fresh install has no symbols until an admin (or `tickmesh demo`) adds some: look again
  // every few seconds while the list is empty, so they appear without a reload.
  useEffect(() => {
    if (symbolsState !== "empty") return;
    const timer = window.setInterval(() => void market.getState().loadSymbols(), SYMBOL_RETRY_MS);
    return () => window.clearInterval(timer);
  }, [symbolsState, market]);

  useEffect(() => {
    // The address first: a reload or a shared link opens the instrument and timeframe it names.
    const stopUrl = startUrlSync(market);
    void market.getState().loadSymbols();
    const stop = startMarketSync({
      market,
      accessToken: session.accessToken,
      renewToken: session.renew,
      socketUrl,
      onAlert: (message) => alerts.getState().receive(message),
    });
    const stopReplay = startReplaySync({
      market,
      accessToken: session.accessToken,
      socketUrl: (instrument) => socketUrl(instrument, "ws/replay"),
    });
    void alerts.getState().poll();
    const poll = setInterval(() => void alerts.getState().poll(), ALERT_POLL_MS);
    return () => {
      stop();
      stopReplay();
      stopUrl();
      clearInterval(poll);
    };
  }, [session, market, alerts]);

  return (
    <div className="dashboard">
      <header className="topbar">
        <h1 className="brand">
          tick<span>mesh</span>
        </h1>
        <SymbolPicker />
        <TimeframeSwitch />
        <LastPrice />
        <QualityBadge />
        <ConnectionStatus />
        <div className="account">
          <span className="muted" title={`role: ${user?.role ?? ""}`}>
            {user?.username}
          </span>
          <button type="button" onClick={() => void session.store.getState().logout()}>
            Sign out
          </button>
        </div>
      </header>
      <SourceBanner />
      {symbolsState === "error" && (
        <div className="banner error" role="alert">
          Instruments could not be loaded: {symbolsError}{" "}
          <button type="button" onClick={() => void market.getState().loadSymbols()}>
            Retry
          </button>
        </div>
      )}
      {symbolsState === "empty" && (
        <div className="banner" role="status">
          No instruments are registered yet. An admin adds them with POST /api/v1/symbols (venue and
          symbol), or run `make demo` for the offline simulator.
        </div>
      )}
      <main className="workspace">
        <section className="chart-column" aria-label="Chart">
          <ReplayControls />
          <ChartControls />
          <PriceChart />
        </section>
        <aside className="side-column">
          <AlertsPanel />
          <FeaturesTable />
        </aside>
      </main>
    </div>
  );
}

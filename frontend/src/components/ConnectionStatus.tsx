import { useMarket } from "../appServices";

const TEXT = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  offline: "Offline",
  replay: "Replay",
} as const;

export function ConnectionStatus() {
  const connection = useMarket((state) => state.connection);
  // In replay mode the live socket is closed on purpose: say so rather than its last state.
  const status = useMarket((state) => (state.mode === "replay" ? "replay" : connection));
  return (
    <span className={`connection ${status}`} role="status" data-status={status} title={`WebSocket: ${TEXT[status]}`}>
      <span className="dot" aria-hidden="true" />
      {TEXT[status]}
    </span>
  );
}

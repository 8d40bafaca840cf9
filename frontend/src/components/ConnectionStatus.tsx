import { useMarket } from "../appServices";

const TEXT = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  offline: "Offline",
} as const;

export function ConnectionStatus() {
  const status = useMarket((state) => state.connection);
  return (
    <span className={`connection ${status}`} role="status" data-status={status} title={`WebSocket: ${TEXT[status]}`}>
      <span className="dot" aria-hidden="true" />
      {TEXT[status]}
    </span>
  );
}

/**
 * When to renew an access token: at 80% of its lifetime, but at least a minute before it
 * expires, and never sooner than five seconds from now.
 */
export function refreshDelayMs(expiresInSeconds: number): number {
  const lifetime = Math.max(0, expiresInSeconds) * 1000;
  const delay = Math.min(lifetime * 0.8, lifetime - 60_000);
  return Math.max(5_000, delay);
}

import { type FormEvent, useId, useState } from "react";
import { useAppServices, useSession } from "../appServices";

type Mode = "sign-in" | "register";

export function LoginScreen() {
  const { session } = useAppServices();
  const status = useSession((state) => state.status);
  const error = useSession((state) => state.error);
  const [mode, setMode] = useState<Mode>("sign-in");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const ids = { user: useId(), password: useId(), hint: useId() };
  const busy = status === "signing-in";

  function submit(event: FormEvent) {
    event.preventDefault();
    const { login, register } = session.store.getState();
    void (mode === "sign-in" ? login(username, password) : register(username, password));
  }

  return (
    <main className="login">
      <form className="login-card" onSubmit={submit} aria-busy={busy}>
        <h1>
          tick<span>mesh</span>
        </h1>
        <p className="muted">{mode === "sign-in" ? "Sign in to the dashboard" : "Create an account"}</p>
        <label htmlFor={ids.user}>Username</label>
        <input
          id={ids.user}
          name="username"
          autoComplete="username"
          required
          minLength={3}
          maxLength={64}
          pattern="[A-Za-z0-9_.\-]{3,64}"
          value={username}
          onChange={(event) => setUsername(event.target.value)}
        />
        <label htmlFor={ids.password}>Password</label>
        <input
          id={ids.password}
          name="password"
          type="password"
          autoComplete={mode === "sign-in" ? "current-password" : "new-password"}
          required
          minLength={8}
          maxLength={128}
          aria-describedby={mode === "register" ? ids.hint : undefined}
          value={password}
          onChange={(event) => setPassword(event.target.value)}
        />
        {mode === "register" && (
          <p id={ids.hint} className="muted small">
            3-64 letters, digits, <code>_ . -</code>; a password of at least 8 characters.
          </p>
        )}
        {error !== null && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Please wait…" : mode === "sign-in" ? "Sign in" : "Create account"}
        </button>
        <button
          type="button"
          className="link"
          onClick={() => setMode(mode === "sign-in" ? "register" : "sign-in")}
        >
          {mode === "sign-in" ? "No account? Create one" : "Have an account? Sign in"}
        </button>
      </form>
    </main>
  );
}

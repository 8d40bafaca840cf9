import { useSession } from "./appServices";
import { Dashboard } from "./components/Dashboard";
import { LoginScreen } from "./components/LoginScreen";

export function App() {
  const signedIn = useSession((state) => state.status === "signed-in");
  return signedIn ? <Dashboard /> : <LoginScreen />;
}

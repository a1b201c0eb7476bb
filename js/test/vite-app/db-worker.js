// The app's database worker: the one line the package's README asks for.
import "grape-vector-db/worker";

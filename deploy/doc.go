// Package deploy holds no code: its tests keep the deployment files of
// this directory (Dockerfile, compose.yaml, kubernetes/, nats/) true to the
// bridge. Without privileges they parse the files and check them against
// each other and against the bridge's flags; with JETWAY_TEST_DEPLOY=1, as
// root (make test-deploy), they build the image's binary as the Dockerfile
// does and run the image, the compose topology and the Kubernetes pod as
// containers would run them: in a fresh network namespace, in a root
// filesystem of their own, as the image's user.
package deploy

# The opq inference server as a container: a Debian build stage compiles the single-file server
# binary (npm run build:server: the bundled ResNet-20 .opq, the page's samples and the GEMM worker
# embedded), and the image is Debian slim with that one file. Serve your own models by mounting a
# folder of .opq files and adding `--models /models`.
#   docker build -t opq-server . && docker run -p 8080:8080 opq-server
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY . .
RUN npm run build:server

FROM debian:bookworm-slim
COPY --from=build /src/out/opq-server /usr/local/bin/opq-server
EXPOSE 8080
USER nobody
ENTRYPOINT ["/usr/local/bin/opq-server", "--host", "0.0.0.0", "--port", "8080"]

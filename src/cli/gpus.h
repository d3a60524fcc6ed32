/* `infermesh gpus`: local GPUs via NVML, or a dcgm-exporter's, as a table or JSON. */
#ifndef IM_CLI_GPUS_H
#define IM_CLI_GPUS_H

/* gpus_main runs `infermesh gpus [--json] [--dcgm URL]`. Reads INFERMESH_NVML_LIB (library path override) and
 * CUDA_VISIBLE_DEVICES. Exit code: 0 ok, also when there is no NVIDIA GPU or NVML (a message says so);
 * 1 when the dcgm-exporter cannot be fetched or parsed, or NVML fails after loading; 2 bad usage. */
int gpus_main(int argc, char **argv);

#endif

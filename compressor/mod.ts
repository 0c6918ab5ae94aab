/**
 * opq/compressor – one-shot pruning-quantization (OPQ, AAAI 2021) and FPGM + APoT of a Model into
 * an OpqModel, with a report of predicted against real sparsity, bits and errors.
 * @module
 */
export { COMPRESS_ERROR_CODES, type CompressErrorCode, CompressError } from "./errors.ts";
export { COMPRESS_DEFAULTS, compressModel, encodeCompressed, type CompressOptions, type CompressResult, findWeights, type Method, METHODS, type ProgressFn, type WeightSlot } from "./compress.ts";
export { type AccuracyInfo, addFileStats, type CalibrationSummary, type CompressReport, type FileStats, HISTOGRAM_BINS, type LayerReport, type RunInfo, weightHistogram, type WeightHistogram } from "./report.ts";
export type { Gemm } from "./calibrate.ts";
export { CALIBRATE_DEFAULTS, type CalibrateOptions, calibrateModel, type CalibrationLayer, type CalibrationResult, type ModelRunner, type RunnableModel } from "./calibrate-model.ts";
export { renderReportHtml, renderSweepHtml, type SizeAccuracyPoint, sizeAccuracyPlot } from "./report-html.ts";
export { laplaceFit, type LaplaceFit } from "./laplace.ts";
export { opqCompress, type OpqLayer, type OpqOptions, type OpqResult, solveSteps, solveThreshold, type WeightLayer } from "./opq.ts";
export { APOT_MAGNITUDES, quantizeApot } from "./apot.ts";
export { fpgmScores, pruneFilters } from "./fpgm.ts";
export { layerConstraints, type LayerConstraint, maskWeights, opqFinetuneMethod, quantizeFixed, requantize } from "./finetune.ts";
export { compressWithPlan, decodePlan, encodePlan, makePlan, type Plan, type PlanCompressResult, type PlanLayer, type PlanLayerReport, type PlanProvenance } from "./plan.ts";
export { checkInputShape, decodeImage, type LabelledImages, loadImageFolder, MAX_MEGAPIXELS, parseNpy } from "./data/images.ts";
export { epochOrder, learningRate, type LrSchedule, type StepContext, type StepStats, stepsPerEpoch, type TrainData, type TrainGraph, trainLoop, type TrainMethod, type TrainOptions } from "./train.ts";
export { type BatchLoss, classificationLoss, DISTILL_DEFAULTS, type DistillOptions } from "./losses.ts";
export { type Checkpoint, decodeCheckpoint, encodeCheckpoint, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";
export { type ChannelSpace, channelSpaces, countMacs, removeChannels, selectSpaceChannels } from "./channel-groups.ts";
export {
  activationAlphaName, APOT_ACTIVATION_LEVELS_4, APOT_TRAIN_DEFAULTS, type ApotLayerReport, type ApotMethod, type ApotPlan, apotStart, type ApotStart, type ApotTrainOptions, apotTrainMethod,
  finishApot, fitActivationAlpha, insertActivationQuantizers, planApot, TRAINED_METHODS, type TrainedMethod, weightAlphaKey,
} from "./spq.ts";

# An open .sinr file: its shape and names, and reads of entries, genes and cells that decode only
# the tiles they touch, as Matrix's dgCMatrix (genes x cells) with dimnames.

setClass("SinrFile", representation(path = "character", matrix = "character", dim = "integer",
                                    state = "environment"))

# The native handle of a file, opened again when it was closed or came through saveRDS: the same
# version of the file (its size and footer checksum), else a sinr_file_changed_error, so that a handle
# never reads another file's cells under the names, shape and summaries it keeps.
.handle <- function(x) {
  state <- x@state
  if (is.null(state$ptr) || !.sinr_is_open(state$ptr)) {
    ptr <- .native(.sinr_open(x@path, x@matrix))
    now <- .native(.sinr_header(ptr))
    if (!.same_version(state$header, now))
      .sinr_stop("FileChangedError", sprintf(paste("%s: the file changed since this handle was opened (another",
                                                   "process replaced or rewrote it); open it again"), x@path))
    state$header <- now
    state$ptr <- ptr
  }
  state$ptr
}

# Whether two headers of a file are of the same version of it (its size and footer checksum); a
# header saved before headers held that identity must match in what it holds instead.
.same_version <- function(known, now) {
  if (is.null(known$identity)) identical(now[names(known)], known) else identical(now$identity, known$identity)
}

# Open a .sinr file: reads its footer only.
# @param path a .sinr file.
# @param matrix the matrix to open (a file holding a whole AnnData has several); default the first.
# @return a SinrFile: dim(), dimnames(), x[genes, cells], sinr_entry().
sinr_open <- function(path, matrix = NULL) {
  if (!is.character(path) || length(path) != 1L || is.na(path) || !nzchar(path))
    .sinr_stop("InvalidInputError", "path must be one file name")
  if (!is.null(matrix) && (!is.character(matrix) || length(matrix) != 1L || is.na(matrix)))
    .sinr_stop("InvalidInputError", "matrix must be one matrix name")
  path <- normalizePath(path.expand(path), mustWork = FALSE)  # absolute: a saved handle opens it from anywhere
  ptr <- .native(.sinr_open(path, if (is.null(matrix)) "" else as.character(matrix)))
  header <- .native(.sinr_header(ptr))
  state <- new.env(parent = emptyenv())
  state$ptr <- ptr
  state$header <- header
  new("SinrFile", path = path, matrix = header$matrix,
      dim = as.integer(c(header$n_genes, header$n_cells)), state = state)
}

.header <- function(x) x@state$header

# A name list of the file (NULL when it stores none), read once.
.names <- function(x, which) {
  state <- x@state
  key <- paste0("names.", which)
  if (!exists(key, envir = state, inherits = FALSE)) assign(key, .native(.sinr_names(.handle(x), which)), state)
  get(key, envir = state, inherits = FALSE)
}

setMethod("dim", "SinrFile", function(x) x@dim)

# Row names are the gene names (or the ids when the file has no names), column names the cell names.
setMethod("dimnames", "SinrFile", function(x) {
  genes <- .names(x, "gene_names")
  if (is.null(genes)) genes <- .names(x, "gene_ids")
  list(genes, .names(x, "cell_names"))
})

setMethod("show", "SinrFile", function(object) {
  h <- .header(object)
  cat(sprintf("<SinrFile %s: matrix '%s', %s genes x %s cells, %s nonzeros, %s>\n", object@path, h$matrix,
              format(h$n_genes, big.mark = ","), format(h$n_cells, big.mark = ","),
              format(h$nnz, big.mark = ","), h$mode))
})

# The index of a name list (NULL: the file stores none), built in C++ at its first lookup and kept with
# the names; built again where saveRDS dropped it.
.name_index <- function(x, which) {
  state <- x@state
  key <- paste0("index.", which)
  index <- if (exists(key, envir = state, inherits = FALSE)) get(key, envir = state, inherits = FALSE)
  if (is.null(index) || !.sinr_is_open(index)) {  # .sinr_is_open: a live external pointer
    names <- .names(x, which)
    if (is.null(names)) return(NULL)
    index <- .native(.sinr_name_index(names))
    assign(key, index, state)
  }
  index
}

# 1-based positions of names along an axis: genes by name, then by id, as Python's reader takes them.
# A name that several genes or cells have is a sinr_key_error naming them (their ids where genes have
# ids, else their indices), never the first of them silently. Names are looked up in C++
# (.name_index), not by match(), which makes an R string of every name (a raw matrix's 737,280
# barcodes: 0.5 s and as much of garbage collection, for a read of a few cells).
.by_name <- function(x, key, axis) {
  what <- c("gene", "cell")[[axis]]
  lists <- if (axis == 1L) c("gene_names", "gene_ids") else "cell_names"
  pos <- rep(NA_integer_, length(key))
  for (which in lists) {
    todo <- is.na(pos)
    if (!any(todo)) break
    index <- .name_index(x, which)
    if (is.null(index)) next
    found <- .native(.sinr_name_match(index, key[todo]))
    pos[todo] <- found$pos
    if (any(found$shared)) {
      name <- key[todo][found$shared][[1L]]
      all <- which(.names(x, which) == name)
      ids <- if (axis == 1L) .names(x, "gene_ids") else NULL
      shown <- if (is.null(ids)) as.character(all) else sprintf("'%s'", ids[all])
      shown <- paste0(paste(utils::head(shown, 5L), collapse = ", "), if (length(all) > 5L) ", ..." else "")
      .sinr_stop("SinrKeyError", sprintf("%d %ss are named '%s' (%s %s): name one by %s", length(all), what, name,
                                         if (is.null(ids)) "indices" else "ids", shown,
                                         if (is.null(ids)) "index" else "its id or index"))
    }
  }
  if (anyNA(pos)) .sinr_stop("SinrKeyError", sprintf("no %s named '%s'", what, .shown_name(key[is.na(pos)][[1L]])))
  pos
}

# A name as a message shows it: one marked "bytes", which R translates to no encoding (sprintf refuses
# it), as its bytes read in the native encoding, escaped where they are no character.
.shown_name <- function(name) if (identical(Encoding(name), "bytes")) encodeString(rawToChar(charToRaw(name))) else name

# 0-based indices of a key along an axis (1: genes, 2: cells): positive or negative whole numbers
# (zeros dropped, as R does), names (.by_name) or a logical vector as long as the axis. NA is refused
# (a read never guesses what a missing index means), and so is a matrix (x[cbind(i, j)] is not a read
# of genes i and j).
.resolve <- function(x, key, axis) {
  n <- x@dim[[axis]]
  what <- c("gene", "cell")[[axis]]
  if (is.factor(key)) key <- as.character(key)
  if (!is.null(dim(key)))
    .sinr_stop("SinrIndexError", sprintf("%s index must be a vector, not a matrix or array", what))
  if (anyNA(key)) .sinr_stop("SinrIndexError", sprintf("%s index holds NA", what))
  if (is.logical(key)) {
    if (length(key) != n)
      .sinr_stop("SinrIndexError", sprintf("boolean %s mask has length %d, expected %.0f", what, length(key), n))
    return(which(key) - 1)
  }
  if (is.character(key)) return(.by_name(x, key, axis) - 1)
  if (is.numeric(key)) {
    if (any(!is.finite(key)) || any(key != trunc(key)))
      .sinr_stop("SinrIndexError", sprintf("%s indices must be whole numbers", what))
    key <- key[key != 0]  # as R drops zeros: x[0, ] has no genes
    if (length(key) && all(key < 0)) {
      key <- setdiff(seq_len(n), -key)
    } else if (any(key < 0)) {
      .sinr_stop("SinrIndexError", sprintf("%s indices mix positive and negative numbers", what))
    }
    bad <- key < 1 | key > n
    if (any(bad)) .sinr_stop("SinrIndexError", sprintf("%s index %s out of range for %.0f %ss", what,
                                                       format(key[bad][[1L]], digits = 15L), n, what))
    return(as.numeric(key) - 1)
  }
  .sinr_stop("SinrIndexError", sprintf("%s must be given by indices, names or a logical vector", what))
}

.named <- function(m, x, genes = NULL, cells = NULL) {
  dn <- dimnames(x)
  rows <- if (is.null(dn[[1L]])) NULL else if (is.null(genes)) dn[[1L]] else dn[[1L]][genes + 1]
  cols <- if (is.null(dn[[2L]])) NULL else if (is.null(cells)) dn[[2L]] else dn[[2L]][cells + 1]
  m@Dimnames <- list(rows, cols)
  m
}

# The genes x cells block of 0-based gene and cell indices (NULL: all), unnamed; the core reads it
# through the cells or the genes, whichever decodes less.
.read_block <- function(x, genes, cells, threads = 1L) {
  .native(.sinr_block(.handle(x), genes, cells, as.integer(threads)))
}

# Read genes and cells of an open file: x[genes, cells], each by index, name or logical vector
# (missing: all). Decodes only the tiles the read touches (a chunk whole, kept for the next read,
# when the read touches at least half of its tiles).
# @return a dgCMatrix, genes x cells, with dimnames.
setMethod("[", "SinrFile", function(x, i, j, ..., drop = FALSE) {
  # x[i] (one index: R's element i of a matrix) and x[i, j, k] are not reads of genes and cells; x[] is all
  given <- nargs() - as.integer(!missing(drop))
  if ((given != 3L && !(given == 2L && missing(i))) || ...length())
    .sinr_stop("SinrIndexError", "index a SinrFile with x[genes, cells] (either may be left empty)")
  if (!is.logical(drop) || length(drop) != 1L || is.na(drop))
    .sinr_stop("SinrIndexError", "drop must be TRUE or FALSE")
  genes <- if (missing(i)) NULL else .resolve(x, i, 1L)
  cells <- if (missing(j)) NULL else .resolve(x, j, 2L)
  out <- .named(.read_block(x, genes, cells, .threads()), x, genes, cells)
  if (drop) out[, , drop = TRUE] else out  # as Matrix drops a dimension of one; the default keeps a matrix
})

# One entry of an open file, by index or name: one tile, decoded only up to the entry.
sinr_entry <- function(x, gene, cell) {
  if (!is(x, "SinrFile")) .sinr_stop("InvalidInputError", "x must be a SinrFile (sinr_open(path))")
  g <- .resolve(x, gene, 1L)
  j <- .resolve(x, cell, 2L)
  if (length(g) != 1L || length(j) != 1L) .sinr_stop("SinrIndexError", "sinr_entry reads one gene and one cell")
  .native(.sinr_entry(.handle(x), g, j))
}

# Decoding threads: option scinrcodec.threads, else the CPUs this process may use (.usable_cpus): 64
# threads on 2 usable cores made a cell read 7x slower.
.threads <- function() {
  n <- getOption("scinrcodec.threads")
  if (is.null(n)) n <- .usable_cpus()
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 1) 1L else as.integer(min(n, 64L))
}

# The CPUs this process may use, as Python's limits.usable_cpus: its affinity where the system has one
# (a batch scheduler's cpuset, taskset; mcaffinity is Linux's and NULL elsewhere), asked each time, else
# every core (parallel::detectCores() runs a shell command on Linux: 2.7 ms, most of a gene read), and
# no more than its cgroup's CPU quota (a container's --cpus, a Kubernetes limit), both asked once per
# session.
.usable_cpus <- local({
  cores <- NULL
  quota <- NULL
  function() {
    allowed <- if (.Platform$OS.type == "unix") length(parallel::mcaffinity()) else 0L
    if (allowed == 0L) {
      if (is.null(cores)) cores <<- parallel::detectCores(logical = TRUE)
      allowed <- cores
    }
    if (is.null(quota)) quota <<- .cgroup_cpu_quota()
    if (is.na(quota)) allowed else max(1L, min(allowed, quota))
  }
})

# The CPUs the cgroup CPU quota of this process and of each group above it allow (the least quota over
# its period, rounded up: v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us), NA where none has one;
# as Python's limits.cgroup_cpu_quota.
.cgroup_cpu_quota <- function(proc_cgroup = "/proc/self/cgroup", mount = "/sys/fs/cgroup") {
  quiet <- function(expr, otherwise) tryCatch(expr, error = function(e) otherwise, warning = function(w) otherwise)
  first <- function(path) quiet(readLines(path, n = 1L, warn = FALSE)[1], NA_character_)
  number <- function(text) suppressWarnings(as.numeric(text))
  quotas <- numeric(0)
  for (line in quiet(readLines(proc_cgroup, warn = FALSE), character(0))) {
    fields <- strsplit(line, ":", fixed = TRUE)[[1]]
    if (length(fields) < 3L) next
    path <- paste(fields[-(1:2)], collapse = ":")
    v2 <- fields[1] == "0" && fields[2] == ""
    if (!startsWith(path, "/") || !(v2 || "cpu" %in% strsplit(fields[2], ",", fixed = TRUE)[[1]])) next
    bases <- if (v2) mount else file.path(mount, c(fields[2], "cpu"))  # v1: a folder per hierarchy
    base <- bases[dir.exists(bases)][1]
    if (is.na(base)) next
    steps <- Filter(nzchar, strsplit(path, "/", fixed = TRUE)[[1]])
    # a container's own namespace, whose group is the mount's root (a group outside it is listed through '..')
    if (".." %in% steps || !dir.exists(do.call(file.path, as.list(c(base, steps))))) steps <- character(0)
    for (depth in rev(seq(0L, length(steps)))) {
      group <- do.call(file.path, as.list(c(base, steps[seq_len(depth)])))
      if (v2) {
        both <- strsplit(first(file.path(group, "cpu.max")), " ", fixed = TRUE)[[1]]
        quota <- number(both[1])
        period <- number(both[2])
      } else {
        quota <- number(first(file.path(group, "cpu.cfs_quota_us")))
        period <- number(first(file.path(group, "cpu.cfs_period_us")))
      }
      if (!is.na(quota) && !is.na(period) && quota > 0 && period > 0) quotas <- c(quotas, ceiling(quota / period))
    }
  }
  if (length(quotas)) as.integer(min(quotas)) else NA_integer_
}

# Read a whole .sinr matrix, decoded on several threads (option scinrcodec.threads; default every CPU
# this process may use).
# @param path a .sinr file.
# @param matrix the matrix to read (default the first).
# @param threads decoding threads.
# @return a dgCMatrix, genes x cells, with the stored gene and cell names as dimnames.
read_sinr <- function(path, matrix = NULL, threads = .threads()) {
  if (!is.numeric(threads) || length(threads) != 1L || !is.finite(threads) || threads < 1 || threads > 1024 ||
      threads != trunc(threads))
    .sinr_stop("InvalidInputError", "threads must be one whole number from 1 to 1024")
  x <- sinr_open(path, matrix)
  .named(.read_block(x, NULL, NULL, threads), x)
}

/*
 * Application flavour: starts the OS loader named by chain=<path> from the
 * device this image was loaded from. A Boot#### application must start the
 * loader itself, because OVMF opens its boot menu when a boot application
 * returns EFI_SUCCESS instead of trying the next entry.
 */
#include "standin.h"

static EFI_GUID device_path_guid = EFI_DEVICE_PATH_PROTOCOL_GUID;

#define CHAIN_KEY "chain="
#define MAX_CHAIN_PATH 512

static CHAR8 chain_path[MAX_CHAIN_PATH + 1];
static CHAR8 error_line[MAX_CHAIN_PATH + 128];

/*
 * Copies the value of chain=<path> into chain_path. The options are
 * key=value words separated by spaces or tabs, and the first chain= word
 * wins. Forward slashes become backslashes, the separator of UEFI file paths.
 * Returns FALSE when there is no chain= word or its value is empty.
 */
static BOOLEAN find_chain_path(const CHAR8 *options)
{
    const CHAR8 *word = options;
    const UINTN key_length = sizeof(CHAIN_KEY) - 1;

    while (*word != '\0') {
        while (is_space(*word)) {
            word++;
        }
        BOOLEAN matches = TRUE;
        for (UINTN i = 0; i < key_length; i++) {
            if (word[i] != CHAIN_KEY[i]) {
                matches = FALSE;
                break;
            }
        }
        if (matches) {
            const CHAR8 *value = word + key_length;
            UINTN length = 0;
            while (value[length] != '\0' && !is_space(value[length]) && length < MAX_CHAIN_PATH) {
                chain_path[length] = value[length] == '/' ? '\\' : value[length];
                length++;
            }
            chain_path[length] = '\0';
            return length > 0;
        }
        while (*word != '\0' && !is_space(*word)) {
            word++;
        }
    }
    return FALSE;
}

static UINTN node_length(const EFI_DEVICE_PATH_PROTOCOL *node)
{
    return node->Length[0] | ((UINTN)node->Length[1] << 8);
}

/* Returns the size in bytes of a device path without its end node. */
static UINTN device_path_size(const EFI_DEVICE_PATH_PROTOCOL *path)
{
    const UINT8 *start = (const UINT8 *)path;
    const EFI_DEVICE_PATH_PROTOCOL *node = path;

    /* Every node is at least 4 bytes long; a shorter length would loop forever. */
    while (node->Type != END_DEVICE_PATH_TYPE && node_length(node) >= sizeof(EFI_DEVICE_PATH_PROTOCOL)) {
        node = (const EFI_DEVICE_PATH_PROTOCOL *)((const UINT8 *)node + node_length(node));
    }
    return (UINTN)((const UINT8 *)node - start);
}

static VOID set_node(EFI_DEVICE_PATH_PROTOCOL *node, UINT8 type, UINT8 subtype, UINTN length)
{
    node->Type = type;
    node->SubType = subtype;
    node->Length[0] = (UINT8)(length & 0xff);
    node->Length[1] = (UINT8)(length >> 8);
}

/*
 * Builds <device path of device>/File(path)/End in pool memory, the form
 * LoadImage needs to read a file from a simple file system on that device.
 * The caller frees the result with FreePool.
 */
static EFI_STATUS make_file_device_path(EFI_HANDLE device, const CHAR8 *path, EFI_DEVICE_PATH_PROTOCOL **result)
{
    EFI_DEVICE_PATH_PROTOCOL *device_path = NULL;
    EFI_STATUS status = gBS->HandleProtocol(device, &device_path_guid, (VOID **)&device_path);
    if (EFI_ERROR(status)) {
        return status;
    }

    UINTN prefix_size = device_path_size(device_path);
    UINTN path_characters = ascii_length(path) + 1;
    UINTN file_node_size = sizeof(EFI_DEVICE_PATH_PROTOCOL) + path_characters * sizeof(CHAR16);
    UINTN total_size = prefix_size + file_node_size + sizeof(EFI_DEVICE_PATH_PROTOCOL);
    UINT8 *buffer = NULL;
    status = gBS->AllocatePool(EfiLoaderData, total_size, (VOID **)&buffer);
    if (EFI_ERROR(status)) {
        return status;
    }

    memcpy(buffer, device_path, prefix_size);

    EFI_DEVICE_PATH_PROTOCOL *file_node = (EFI_DEVICE_PATH_PROTOCOL *)(buffer + prefix_size);
    set_node(file_node, MEDIA_DEVICE_PATH, MEDIA_FILEPATH_DP, file_node_size);
    /* Node data need not be aligned, so the UCS-2 path is written byte by byte. */
    UINT8 *name = (UINT8 *)(file_node + 1);
    for (UINTN i = 0; i < path_characters; i++) {
        name[2 * i] = (UINT8)path[i];
        name[2 * i + 1] = 0;
    }

    EFI_DEVICE_PATH_PROTOCOL *end_node = (EFI_DEVICE_PATH_PROTOCOL *)(buffer + prefix_size + file_node_size);
    set_node(end_node, END_DEVICE_PATH_TYPE, END_ENTIRE_DEVICE_PATH_SUBTYPE, sizeof(EFI_DEVICE_PATH_PROTOCOL));

    *result = (EFI_DEVICE_PATH_PROTOCOL *)buffer;
    return EFI_SUCCESS;
}

static VOID print_chain_error(const CHAR8 *message, EFI_STATUS status)
{
    TEXT line;
    text_init(&line, error_line, sizeof(error_line));
    text_append(&line, CONSOLE_PREFIX "error: ");
    text_append(&line, message);
    text_append(&line, " chain=");
    text_append(&line, chain_path);
    text_append(&line, " (status 0x");
    text_append_hex(&line, status, 16);
    text_append(&line, ")\r\n");
    console_write(line.chars);
}

EFI_STATUS chain_load(EFI_HANDLE image_handle, EFI_LOADED_IMAGE_PROTOCOL *loaded_image, const CHAR8 *options)
{
    EFI_DEVICE_PATH_PROTOCOL *file_path = NULL;
    EFI_HANDLE chained_image = NULL;
    EFI_STATUS status;

    if (!find_chain_path(options)) {
        console_write(CONSOLE_PREFIX "error: no chain=<path> in the load options, nothing to start\r\n");
        return EFI_INVALID_PARAMETER;
    }

    status = make_file_device_path(loaded_image->DeviceHandle, chain_path, &file_path);
    if (EFI_ERROR(status)) {
        print_chain_error("cannot build the device path of", status);
        return status;
    }

    status = gBS->LoadImage(FALSE, image_handle, file_path, NULL, 0, &chained_image);
    gBS->FreePool(file_path);
    if (EFI_ERROR(status)) {
        /* LoadImage returns a handle with EFI_SECURITY_VIOLATION, and the caller must unload it. */
        if (status == EFI_SECURITY_VIOLATION && chained_image != NULL) {
            gBS->UnloadImage(chained_image);
        }
        print_chain_error("cannot load", status);
        return status;
    }

    UINTN exit_data_size = 0;
    CHAR16 *exit_data = NULL;
    status = gBS->StartImage(chained_image, &exit_data_size, &exit_data);
    if (exit_data != NULL) {
        gBS->FreePool(exit_data);
    }
    return status;
}
